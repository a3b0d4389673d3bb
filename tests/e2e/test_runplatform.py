"""``manage.py runplatform`` (what ``make run`` starts): it keeps its children running, and its
development API key works against whatever database is in use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.platform import REPO, Platform, free_port, pids_using
from tests.support.waits import wait_for

pytestmark = pytest.mark.e2e


def _children_of(pid: int) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ValueError):
                continue
    return found


class RunPlatform:
    def __init__(self, platform: Platform, **env: str) -> None:
        self.platform, self.port = platform, free_port()
        self.sup_port = platform.supervisor_ports["python"]
        self.env = {
            **platform.env,
            "SUPERVISORS": f"python=127.0.0.1:{self.sup_port}",
            "RUNPLATFORM_REDIS": "off",
            **env,
        }
        self.log = open(platform.workdir / f"runplatform-{self.port}.log", "wb")  # noqa: SIM115

    def __enter__(self) -> RunPlatform:
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runplatform", "--port", str(self.port)],
            cwd=REPO,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: b"platform up" in self.output(), what="runplatform is up", timeout_s=60, every_s=0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)

    def output(self) -> bytes:
        return (self.platform.workdir / f"runplatform-{self.port}.log").read_bytes()

    def subtract(self) -> httpx.Response:
        key = (Path(self.env["PLATFORM_VAR_DIR"]) / "dev_api_key").read_text().strip()
        return httpx.post(
            f"http://127.0.0.1:{self.port}/api/v1/calculate/subtract",
            json={"operand1": 10, "operand2": 5},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )

    def supervisor_pid(self) -> int:
        (pid,) = [p for p, cmd in _children_of(self.process.pid).items() if "runsupervisor" in cmd]
        return pid


@pytest.fixture
def unstarted():
    platform = Platform()
    platform.manage("migrate", "--noinput", "-v0")
    yield platform
    platform.stop()


def test_a_killed_supervisor_is_started_again_and_calls_succeed_once_it_is_back(unstarted):
    with RunPlatform(unstarted) as run:
        assert run.subtract().status_code == 200
        first = run.supervisor_pid()
        os.kill(first, signal.SIGKILL)
        meanwhile = run.subtract()
        assert meanwhile.status_code == 503 and int(meanwhile.headers["Retry-After"]) >= 1
        assert meanwhile.json()["error"]["code"] == "supervisor_unavailable"
        wait_for(lambda: run.subtract().status_code == 200, what="calls succeed again", timeout_s=30, every_s=0.3)
        assert run.supervisor_pid() != first
        assert b"exited with code -9; starting it again" in run.output()
    assert run.process.returncode == 0
    assert not pids_using(str(unstarted.socket_root)), "workers outlived runplatform"


def test_the_dev_key_works_against_a_database_it_was_not_made_in(unstarted):
    with RunPlatform(unstarted) as run:
        assert run.subtract().status_code == 200
    fresh = str(unstarted.workdir / "switched.sqlite3")
    unstarted.env["SQLITE_PATH"] = fresh
    unstarted.manage("migrate", "--noinput", "-v0")
    with RunPlatform(unstarted, SQLITE_PATH=fresh) as switched:
        answer = switched.subtract()
        assert answer.status_code == 200, answer.text
