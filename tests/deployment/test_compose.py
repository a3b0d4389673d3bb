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


def resolve(tmp_path_factory, file: str, **variables: str) -> dict:
    """``file`` as the compose tool resolves it (anchors merged, variables substituted)."""
    secrets = tmp_path_factory.mktemp("secrets")
    (secrets / "tls").mkdir()
    for name in ("postgres_password", "database_url", "django_secret_key", "supervisor_secret"):
        (secrets / name).write_text("not-a-secret\n")
    for name in ("ca.crt", "supervisor.crt", "supervisor.key", "gateway.crt", "gateway.key"):
        (secrets / "tls" / name).write_text("not-a-certificate\n")
    command = [*compose_command(), "--project-directory", str(REPO), "-f", str(REPO / file), "config"]
    env = {**os.environ, "SECRETS_DIR": str(secrets), **variables}
    quiet = subprocess.run([*command, "-q"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0, quiet.stderr
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict:
    return resolve(tmp_path_factory, "compose.yml")


@pytest.fixture(scope="module")
def worker_host(tmp_path_factory) -> dict:
    # A documentation address (RFC 5737): only written into the configuration, never contacted.
    variables = {"WORKER_HOST_NAME": "host-b", "WORKER_HOST_ADDRESS": "192.0.2.10"}
    return resolve(tmp_path_factory, "compose.worker-host.yml", **variables)


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


def _published(port: dict | str) -> tuple[str, int]:
    """(host address, published port) of a port mapping (docker-compose prints short syntax, the plugin long)."""
    if isinstance(port, dict):
        return port["host_ip"], int(port["published"])
    address, published, _ = port.rsplit(":", 2)
    return address, int(published)


def _flag(command: list[str], name: str) -> str:
    return next(arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}="))


def test_gateways_and_supervisors_speak_mutual_tls_with_their_own_certificates(resolved):
    services = resolved["services"]
    assert services["gateway"]["environment"]["SUPERVISOR_TLS_CERT_FILE"] == "/run/secrets/gateway_tls_cert"
    for name in SUPERVISORS:
        service = services[name]
        environment, command = service["environment"], service["command"]
        assert environment["SUPERVISOR_TLS_CERT_FILE"] == "/run/secrets/supervisor_tls_cert", name
        assert environment["SUPERVISOR_TLS_CA_FILE"] == "/run/secrets/tls_ca", name
        # The relay listens for gateways elsewhere; the health port only on loopback, probed there.
        assert _flag(command, "relay-listen").startswith("0.0.0.0:")
        health = _flag(command, "health-listen")
        assert health.startswith("127.0.0.1:")
        assert service["healthcheck"]["test"][-2:] == ["platform_core.supervisor.health", health]
    assert "gateway_tls_key" not in str(services["python-supervisor"].get("secrets"))


def test_a_worker_host_runs_supervisors_only_reachable_on_its_address(worker_host):
    services = worker_host["services"]
    assert set(services) == SUPERVISORS
    for name, service in services.items():
        assert any("docker.sock" in v for v in _volumes(service)), name
        assert "--allow-remote" in service["command"] and service["environment"]["SUPERVISOR_TLS_KEY_FILE"]
        assert service["environment"]["PLATFORM_HOST_NAME"] == "host-b"
        published = {
            (p["host_ip"], int(p["published"]))
            if isinstance(p, dict)
            else (p.rsplit(":", 2)[0], int(p.rsplit(":", 2)[1]))
            for p in service["ports"]
        }
        command = service["command"]
        served = {int(_flag(command, flag).rpartition(":")[2]) for flag in ("listen", "relay-listen")}
        assert published == {("192.0.2.10", port) for port in served}, name  # API and relay, never health
