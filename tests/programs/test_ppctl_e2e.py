"""ppctl driven as a subprocess against a running platform: output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.platform import wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PPCTL = REPO / ".venv" / "bin" / "ppctl"


@pytest.fixture(scope="module")
def ppctl(programs_platform):
    subprocess.run(["make", "-s", "ppctl"], cwd=REPO, check=True, timeout=60)
    env = {**os.environ, "PP_URL": programs_platform.url, "PP_API_KEY": programs_platform.api_key}
    env.pop("PYTHONPATH", None)

    def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(PPCTL), *args],
            env={**env, **kwargs.pop("env", {})},
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/tmp",
            **kwargs,
        )

    return run


def test_invoke_prints_progress_lines_and_the_result(ppctl):
    done = ppctl("invoke", "slow_count", "steps=3", "delay_ms=20")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counted"] == 3
    lines = done.stderr.splitlines()  # not a terminal: plain lines
    assert "progress 100% Counted 3 of 3" in lines
    assert any(line.startswith("allocated worker-") for line in lines)


def test_exit_codes_scripts_can_test(ppctl):
    assert ppctl("invoke", "divide_numbers", "operand1=1", "operand2=0").returncode == 1  # the plugin failed
    bad = ppctl("invoke", "slow_count", "steps=0")
    assert bad.returncode == 3 and "invalid_input" in bad.stderr
    assert ppctl("invoke", "no_such_plugin").returncode == 3
    assert ppctl("invoke", "slow_count", "not-a-pair").returncode == 2
    assert ppctl("plugins", env={"PP_API_KEY": "pp_nonsense"}).returncode == 6
    assert ppctl("plugins", env={"PP_URL": "http://127.0.0.1:9"}).returncode == 7


def test_async_get_wait_cancel_and_ls(ppctl):
    queued = ppctl("invoke", "slow_count", "steps=2", "delay_ms=10", "--async")
    assert queued.returncode == 0
    invocation_id = queued.stdout.strip()
    waited = ppctl("get", invocation_id, "--wait")
    assert waited.returncode == 0 and json.loads(waited.stdout)["counted"] == 2
    got = json.loads(ppctl("get", invocation_id).stdout)
    assert got["status"] == "succeeded"
    # Finished: cancelling it is refused (409 → 3).
    assert ppctl("cancel", invocation_id).returncode == 3
    slow = ppctl("invoke", "slow_count", "steps=100", "delay_ms=100", "--async").stdout.strip()
    wait_for(lambda: json.loads(ppctl("get", slow).stdout)["status"] == "running", what="running", timeout_s=20)
    cancelled = ppctl("cancel", slow)
    assert cancelled.returncode == 0 and cancelled.stdout.strip() == f"{slow} cancelled"
    assert ppctl("get", slow, "--wait").returncode == 5
    listing = ppctl("ls", "--plugin", "slow_count", "--status", "cancelled")
    assert listing.returncode == 0 and slow in listing.stdout and listing.stdout.startswith("ID")
    as_json = json.loads(ppctl("--json", "ls", "--limit", "1").stdout)
    assert len(as_json["results"]) == 1


def test_workers_and_plugins(ppctl):
    plugins = ppctl("plugins")
    assert plugins.returncode == 0 and "slow_count" in plugins.stdout and "subtract_numbers" in plugins.stdout
    workers = ppctl("workers")
    assert workers.returncode == 0 and "python" in workers.stdout
    assert "supervisors" in json.loads(ppctl("--json", "workers").stdout)


def test_idempotency_key_from_the_cli(ppctl):
    first = ppctl("--json", "invoke", "subtract_numbers", "operand1=5", "operand2=1", "--idempotency-key", "cli-k1")
    again = ppctl("--json", "invoke", "subtract_numbers", "operand1=5", "operand2=1", "--idempotency-key", "cli-k1")
    assert first.returncode == again.returncode == 0
    assert json.loads(first.stdout)["invocation_id"] == json.loads(again.stdout)["invocation_id"]


def test_on_a_terminal_progress_is_a_bar_redrawn_in_place(programs_platform):
    import pty

    subprocess.run(["make", "-s", "ppctl"], cwd=REPO, check=True, timeout=60)
    controller, terminal = pty.openpty()
    env = {**os.environ, "PP_URL": programs_platform.url, "PP_API_KEY": programs_platform.api_key}
    done = subprocess.run(
        [str(PPCTL), "invoke", "slow_count", "steps=4", "delay_ms=20"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=terminal,
        timeout=60,
        cwd="/tmp",
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert done.returncode == 0 and json.loads(done.stdout)["counted"] == 4
    text = shown.decode()
    assert "\r[" + "#" * 30 + "] 100.0% Counted 4 of 4" in text
    assert "\r[#######" in text and "progress 25%" not in text  # a bar, not lines
