"""The process backend's sandbox, over HTTP: what a plugin can reach from its worker (docs/SECURITY.md).

The prober plugin (plugins/hostile/prober.py) tries to read the platform's secrets and database,
list and write where it should not, connect to the gateway and the supervisors, resolve a name,
see other processes and make the syscalls the seccomp filter refuses; each attempt must fail.
Run against forked workers (the zygote, the default) and spawned ones (bwrap).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.reliability.hostile import Background, register_hostile
from tests.support.platform import REPO, Platform, running_worker

pytestmark = pytest.mark.e2e

WORKER_UID = 65500


def plant_secrets(platform: Platform) -> dict[str, Path]:
    """The files `make run` keeps in var/ (here the platform's own var directory)."""
    files = {name: platform.workdir / name for name in ("secret_key", "dev_api_key")}
    for path in files.values():
        path.write_text("not for plugins\n")
        path.chmod(0o600)
    files["database"] = platform.workdir / "db.sqlite3"
    return files


def probe(platform: Platform, api: httpx.Client) -> tuple[dict, Path, Path]:
    """Run the prober while another worker (slow_count) is busy; its answer, its directory and the other's."""
    secrets = plant_secrets(platform)
    other = Background.post(platform, "/api/v1/plugins/slow_count/invoke", {"steps": 2, "delay_ms": 1500})
    other_id = running_worker(api, "slow_count")["worker_id"]
    root = platform.socket_root / platform.supervisor_id("python")
    [other_directory] = root.glob(f"{other_id}-*")
    repo_var = [str(p) for p in (REPO / "var").glob("*") if p.is_file()]
    body = {
        "read": [*(str(p) for p in secrets.values()), *repo_var, "/etc/shadow"],
        "list": [str(root), str(other_directory), str(platform.workdir), str(REPO)],
        "write": [
            "~/marker",
            "/tmp/marker",
            str(root / "marker"),
            str(platform.workdir / "marker"),
            str(REPO / "plugin_workers" / "python" / "marker"),
            "/usr/marker",
        ],
        "connect": [
            ["127.0.0.1", platform.http_port],
            *(["127.0.0.1", port] for port in platform.supervisor_ports.values()),
        ],
        "resolve": ["example.com", "localhost"],
    }
    response = api.post("/api/v1/plugins/hostile_prober/invoke", json=body)
    assert response.status_code == 200, response.text
    assert other.result().status_code == 200
    found = response.json()["result"]
    return found, Path(found["home"]), other_directory


def assert_contained(found: dict, home: Path, other_directory: Path, platform: Platform) -> None:
    # Not root, no capability, no new privileges, the seccomp filter in place.
    assert found["uid"] == WORKER_UID and found["gid"] == WORKER_UID and found["groups"] == []
    assert found["status"]["CapEff"] == found["status"]["CapPrm"] == "0000000000000000"
    assert found["status"]["NoNewPrivs"] == "1"
    assert found["status"]["Seccomp"] == "2"
    for call, outcome in found["syscalls"].items():
        assert outcome == "failed: EPERM", (call, outcome)

    # Neither the platform's secrets nor its database, nor anything of the machine's /etc.
    for path, outcome in found["read"].items():
        assert outcome.startswith("failed:"), (path, outcome)

    # Its own directory is all it sees of the socket root; the other worker's is not there.
    root = platform.socket_root / platform.supervisor_id("python")
    assert home.parent == root
    assert found["list"][str(root)] == [home.name]
    assert found["list"][str(other_directory)].startswith("failed: ENOENT")
    assert "db.sqlite3" not in found["list"][str(platform.workdir)]
    # Of the repository, only what the runtime needs: its virtualenv, the SDK and the plugins.
    assert set(found["list"][str(REPO)]) <= {".venv", "plugin_workers"}, found["list"][str(REPO)]

    # Writable: its own directory and its private /tmp; nothing else.
    writes = found["write"]
    assert writes.pop("~/marker") == "written"
    assert writes.pop("/tmp/marker") == "written"
    for path, outcome in writes.items():
        assert outcome.startswith("failed:"), (path, outcome)

    # No network: the gateway and the supervisors are out of reach, nothing resolves.
    assert found["interfaces"] == ["lo"]
    for address, outcome in found["connect"].items():
        assert outcome.startswith("failed: ECONNREFUSED"), (address, outcome)
    for name, outcome in found["resolve"].items():
        assert outcome.startswith("failed:"), (name, outcome)

    # Its own PID namespace: itself (and bwrap's init, if spawned); no supervisor, gateway, zygote
    # (a forked worker shows the zygote's command line: it is its copy) or other worker in sight.
    assert set(found["processes"]) <= {"1", "2"}, found["processes"]
    commands = " ".join(found["processes"].values())
    for foreign in ("runsupervisor", "daphne", "slow_count"):
        assert foreign not in commands, (foreign, found["processes"])


def test_health_says_the_workers_are_sandboxed(reliability_platform, rapi):
    [python] = [s for s in rapi.get("/api/v1/health").json()["supervisors"] if s["runtime"] == "python"]
    assert python["isolation"]["mode"] == "auto"
    assert python["isolation"]["sandboxed"] is True, python["isolation"]
    assert "seccomp" in python["isolation"]["detail"]


def test_a_forked_worker_reaches_nothing_of_the_platform(reliability_platform, rapi):
    found, home, other_directory = probe(reliability_platform, rapi)
    assert_contained(found, home, other_directory, reliability_platform)
    assert found["pid"] == 1, "PID 1 of its own namespace"


def test_a_spawned_worker_reaches_nothing_of_the_platform(fresh_platform):
    platform = fresh_platform(extra_env={"PYTHON_WORKER_ZYGOTE": "0", "ALLOCATION_TIMEOUT_S": "10"})
    register_hostile(platform)
    with platform.client() as api:
        found, home, other_directory = probe(platform, api)
    assert_contained(found, home, other_directory, platform)


def test_auto_without_a_sandbox_runs_workers_and_says_so_loudly(fresh_platform):
    # No bwrap on the supervisor's PATH: the sandbox cannot be set up.
    platform = fresh_platform(extra_env={"PATH": "/nonexistent"})
    with platform.client() as api:
        [python] = [s for s in api.get("/api/v1/health").json()["supervisors"] if s["runtime"] == "python"]
        assert python["isolation"]["mode"] == "auto"
        assert python["isolation"]["sandboxed"] is False
        assert "bubblewrap is not installed" in python["isolation"]["detail"]
        response = api.post("/api/v1/calculate/subtract", json={"operand1": 3, "operand2": 1})
        assert response.status_code == 200, response.text
        trace = api.get(f"/api/v1/invocations/{response.json()['invocation_id']}").json()["trace"]
    assert any("(UNSANDBOXED)" in event["detail"] for event in trace), trace
    log = platform.log("supervisor-python")
    assert "WORKER SANDBOX unavailable" in log and "run UNSANDBOXED" in log
    assert "NOT SANDBOXED" in log


def test_required_refuses_workers_when_no_sandbox_can_be_had(fresh_platform):
    # No bwrap on the supervisor's PATH: the sandbox cannot be set up.
    platform = fresh_platform(extra_env={"WORKER_SANDBOX": "required", "PATH": "/nonexistent"})
    with platform.client() as api:
        [python] = [s for s in api.get("/api/v1/health").json()["supervisors"] if s["runtime"] == "python"]
        assert python["isolation"] == {
            "mode": "required",
            "sandboxed": False,
            "detail": "unavailable: bubblewrap is not installed (apt-get install bubblewrap)",
        }
        response = api.post("/api/v1/calculate/subtract", json={"operand1": 3, "operand2": 1})
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "worker_start_failed"
    assert "WORKER_SANDBOX=required" in response.json()["error"]["message"]
    assert "NOT SANDBOXED" in platform.log("supervisor-python")
