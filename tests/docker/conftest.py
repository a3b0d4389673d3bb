"""Fixtures of the docker-backend tests.

Without a Docker Engine (or without the worker images) these tests skip with the reason, except
in CI (``CI=true``), where they fail: CI starts an engine and builds the images, so a skip there
would hide a broken setup. At the end of the session no container of this session's supervisors
may be left. Containers of other supervisors are not ours to judge: other sessions (a colleague's
``make run``, a benchmark) may share the engine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support.platform import Platform

LABEL = "plugin-platform.supervisor"
PYTHON_IMAGE = "python-plugin-worker:latest"
JAVA_IMAGE = "java-plugin-worker:latest"
# Supervisor ids used by this session: the final check looks for their containers.
SESSION_SUPERVISORS: set[str] = set()


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"CI must run the docker tests, but: {reason}", pytrace=False)
    pytest.skip(reason)


def containers_of(client, supervisor_ids: set[str] | str) -> list[dict]:
    """Containers (any state) labelled with one of these supervisor ids."""
    ids = {supervisor_ids} if isinstance(supervisor_ids, str) else supervisor_ids
    # Low-level listing: the SDK's list() races with auto_remove (docs/DOCKER.md).
    return [c for c in client.api.containers(all=True, filters={"label": LABEL}) if c["Labels"].get(LABEL) in ids]


def wait_until_gone(client, supervisor_ids: set[str] | str, timeout_s: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while (left := containers_of(client, supervisor_ids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def require_image(client, image: str) -> None:
    from docker.errors import ImageNotFound

    try:
        client.images.get(image)
    except ImageNotFound:
        unavailable(f"image {image} is missing: build the worker images with `make images`")


@pytest.fixture(scope="session")
def docker_client():
    from platform_core.supervisor.backends.docker import DockerUnavailable, connect

    try:
        client = connect(timeout_s=10)
    except DockerUnavailable as exc:
        unavailable(str(exc))
    yield client
    leftovers = wait_until_gone(client, SESSION_SUPERVISORS)
    for container in leftovers:
        client.api.remove_container(container["Id"], force=True)
    assert not leftovers, f"containers survived their supervisors: {[c['Names'] for c in leftovers]}"


@pytest.fixture(scope="session")
def java_image(docker_client) -> bool:
    from docker.errors import ImageNotFound

    try:
        docker_client.images.get(JAVA_IMAGE)
    except ImageNotFound:
        return False
    return True


@pytest.fixture(scope="session")
def docker_platform(docker_client, java_image):
    """A real platform whose supervisors' default backend is docker (python, and java if its image exists)."""
    require_image(docker_client, PYTHON_IMAGE)
    runtimes = ("python", "java") if java_image else ("python",)
    # Containers spawned per invocation, as these tests inspect them; stem cells (on by default
    # for docker) have tests of their own (test_stemcells_docker.py).
    platform = Platform(
        runtimes=runtimes,
        backend="docker",
        absent_runtimes=() if java_image else ("java",),
        extra_env={"STEM_CELLS": ""},
    )
    SESSION_SUPERVISORS.update(platform.supervisor_id(runtime) for runtime in runtimes)
    platform.start()
    # A variant of slow_count with a short timeout, for the timeout flow (as tests/conftest.py).
    platform.manage(
        "shell",
        "-c",
        (
            "from platform_core.registry.models import PluginSpec as P; s = P.objects.get(name='slow_count'); "
            "s.pk = None; s.primitive = s.name; s.name = 'slow_count_short'; s.timeout_s = 1.0; s.save()"
        ),
    )
    yield platform
    platform.stop()
    left = wait_until_gone(docker_client, {platform.supervisor_id(runtime) for runtime in runtimes})
    assert not left, f"containers survived the platform: {[c['Names'] for c in left]}"


@pytest.fixture
def docker_api(docker_platform):
    with docker_platform.client() as client:
        yield client


@pytest.fixture
def socket_root():
    """A short private socket root for in-process supervisors."""
    root = Path(tempfile.mkdtemp(prefix="pdt-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)
