"""The conformance kit itself: it fails workers that break the protocol, each with a message that
says what is wrong, and ``manage.py pppcheck`` prints every check and exits non-zero."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from platform_core.runtimes import ROOT, RuntimeSpec
from platform_core.supervisor.conformance import FAIL, PASS, Report, Target, run_checks
from tests.support import proto_worker

pytestmark = pytest.mark.e2e

WORKER = proto_worker.COMMAND


def check(fault: str, **options) -> Report:
    spec = RuntimeSpec.create("proto", [*WORKER, "--fault", fault])
    options.setdefault("orphan_check", False)
    return asyncio.run(run_checks(Target(spec=spec, arguments=b'{"text": "hi"}', **options)))


def failures(report: Report) -> dict[str, str]:
    return {result.name: result.detail for result in report.results if result.status == FAIL}


def test_a_worker_that_never_sends_a_terminal_message_fails_with_a_clear_message():
    report = check("no_terminal")

    assert not report.ok
    assert set(failures(report)) == {"invoke", "repeat", "concurrent"}
    assert failures(report)["invoke"] == (
        "the Invoke stream ended without a terminal message (received: log, progress): "
        "every Invoke must end with exactly one Completed or Failed"
    )
    assert report["health"].status == PASS and report["sigterm"].status == PASS


def test_a_worker_that_hangs_fails_at_the_deadline():
    report = check("hang", timeout_s=1.0, concurrency=1)

    assert "no terminal Completed or Failed message within 1 s (received: log, progress)" in failures(report)["invoke"]


def test_a_second_terminal_message_fails():
    report = check("two_terminals")

    assert (
        "exactly one terminal message must end the stream, got: log, progress, completed, failed"
        in (failures(report)["invoke"])
    )


def test_a_large_result_in_one_message_fails():
    report = check("no_chunks", large_arguments=b'{"text": "abcd", "repeat": 1500000}')

    assert set(failures(report)) == {"large_result"}
    assert "send results over 1 MiB as ResultChunk messages" in failures(report)["large_result"]


def test_wrong_failure_codes_fail():
    report = check("wrong_code")

    assert set(failures(report)) == {"bad_json", "bad_utf8"}
    assert failures(report)["bad_json"].startswith("expected Failed code 'invalid_input', got 'error'")


def test_a_worker_that_ignores_sigterm_fails():
    report = check("ignore_sigterm", stop_grace_s=0.5)

    assert set(failures(report)) == {"sigterm"}
    assert failures(report)["sigterm"].startswith("still running 0.5 s after SIGTERM, killed with SIGKILL")


def test_a_worker_that_never_listens_fails_to_start_and_the_rest_is_skipped():
    report = check("no_socket", ready_timeout_s=1.0)

    assert failures(report) == {"start": "worker not ready after 1.0 s"}
    assert all(result.status == "skip" for result in report.results[1:])


def test_pppcheck_command_prints_each_check_and_exits_non_zero_on_failure():
    command = [sys.executable, "manage.py", "pppcheck", "--arguments", '{"text": "hi"}', "--no-orphan-check", "--"]
    broken = subprocess.run(
        [*command, *WORKER, "--fault", "no_terminal"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    good = subprocess.run([*command, *WORKER], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "FAIL  invoke             the Invoke stream ended without a terminal message" in broken.stdout
    assert "PASS  health" in broken.stdout
    assert broken.stdout.rstrip().endswith("pppcheck: 7 passed, 3 failed, 3 skipped")
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.rstrip().endswith("pppcheck: 10 passed, 0 failed, 3 skipped")


def test_pppcheck_refuses_a_command_without_a_socket_placeholder():
    result = subprocess.run(
        [sys.executable, "manage.py", "pppcheck", "--", "my-worker", "--unix", "/tmp/x.sock"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "put {socket} where the socket path goes" in result.stderr
