"""compose.yml: valid for the compose tool, and the production topology of docs/DEPLOYMENT.md.

Only ``config`` is run: nothing is built or pulled (no registry here), nothing is started.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from tests.deployment.conftest import unavailable
from tests.support.platform import REPO

PLATFORM_SERVICES = {"migrate", "python-supervisor", "java-supervisor", "gateway"}
LONG_RUNNING = {"postgres", "redis", "python-supervisor", "java-supervisor", "gateway"}
SUPERVISORS = {"python-supervisor", "java-supervisor"}


def compose_command() -> list[str]:
    """``docker compose`` (the plugin) where it works, else Debian's ``docker-compose``."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    unavailable("no compose tool (apt-get install docker-compose; .ci/run installs it)")


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict:
    """compose.yml as the compose tool resolves it (anchors merged, variables substituted)."""
    secrets = tmp_path_factory.mktemp("secrets")
    for name in ("postgres_password", "database_url", "django_secret_key", "supervisor_secret"):
        (secrets / name).write_text("not-a-secret\n")
    command = [*compose_command(), "--project-directory", str(REPO), "-f", str(REPO / "compose.yml"), "config"]
    env = {**os.environ, "SECRETS_DIR": str(secrets)}
    quiet = subprocess.run([*command, "-q"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0, quiet.stderr
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _volumes(service: dict) -> list[str]:
    """``source:target`` of each mount (docker-compose prints short syntax, the plugin long)."""
    return [
        ":".join(v.split(":")[:2]) if isinstance(v, str) else f"{v.get('source')}:{v.get('target')}"
        for v in service.get("volumes", [])
    ]


def test_the_topology_has_every_part(resolved):
    assert {"postgres", "redis", *PLATFORM_SERVICES} <= set(resolved["services"])
    assert "pgdata" in resolved["volumes"]


def test_only_the_supervisors_reach_docker(resolved):
    mounting = {name for name, s in resolved["services"].items() if any("docker.sock" in v for v in _volumes(s))}
    assert mounting == SUPERVISORS


def test_only_the_gateway_is_published_and_the_rest_is_on_an_internal_network(resolved):
    services = resolved["services"]
    published = {name for name, s in services.items() if s.get("ports")}
    assert published == {"gateway"}
    [port] = services["gateway"]["ports"]
    assert (port["target"] if isinstance(port, dict) else port.rsplit(":", 1)[-1].split("/")[0]) in {8080, "8080"}
    assert resolved["networks"]["platform"].get("internal") is True
    for name in LONG_RUNNING - {"gateway"}:
        assert set(services[name]["networks"]) == {"platform"}, name


def test_health_checks_and_restart_policies(resolved):
    services = resolved["services"]
    for name in LONG_RUNNING:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert services[name].get("restart") in {"unless-stopped", "always"}, name
    assert services["gateway"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_platform_images_come_from_the_repository_dockerfile_with_a_base_image_argument(resolved):
    for name in PLATFORM_SERVICES:
        build = resolved["services"][name]["build"]
        assert os.path.realpath(build["context"]) == os.path.realpath(REPO), name
        assert "BASE_IMAGE" in build["args"], name
    assert "ARG BASE_IMAGE=python:" in (REPO / "Dockerfile").read_text()


def test_the_gateway_finds_the_supervisors_and_secrets_come_from_files(resolved):
    services = resolved["services"]
    environment = services["gateway"]["environment"]
    for entry in environment["SUPERVISORS"].split(","):
        runtime, address = entry.split("=")
        host, port = address.split(":")
        assert host in services and f"--listen=0.0.0.0:{port}" in services[host]["command"], entry
        assert f"--runtime={runtime}" in services[host]["command"]
    for name in PLATFORM_SERVICES:
        env = services[name]["environment"]
        assert "DATABASE_URL" not in env and "DJANGO_SECRET_KEY" not in env and "SUPERVISOR_SECRET" not in env
        assert env["DATABASE_URL_FILE"].startswith("/run/secrets/")
    # The supervisors' socket root is the same path in the containers as on the host (bind mounts).
    root = environment["SUPERVISOR_SOCKET_ROOT"]
    for name in {"gateway", *SUPERVISORS}:
        assert f"{root}:{root}" in _volumes(services[name]), name
