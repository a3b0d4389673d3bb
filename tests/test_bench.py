"""The benchmark runs in CI in its quick mode, so that it cannot rot."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.platform import REPO

pytestmark = pytest.mark.e2e


def test_bench_quick_prints_the_table(tmp_path):
    output = tmp_path / "PERFORMANCE.md"
    output.write_text("# Performance\n\nintro\n\n<!-- bench:start -->\nold\n<!-- bench:end -->\n\nanalysis\n")
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--no-docker", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| python | ephemeral | process |" in result.stdout
    assert "| python | pooled | process |" in result.stdout
    assert "every one recorded" in result.stdout
    assert "Worker sandbox on and off" in result.stdout
    assert "| python | ephemeral | " in result.stdout.split("Worker sandbox on and off")[1]
    text = output.read_text()
    assert text.startswith("# Performance\n\nintro") and text.rstrip().endswith("analysis")
    assert "old" not in text and "| clients |" in text


def test_bench_hotpath_quick_prints_floors_platform_and_targets(tmp_path):
    output = tmp_path / "PERFORMANCE.md"
    output.write_text("# Performance\n\n<!-- bench-hotpath:start -->\nold\n<!-- bench-hotpath:end -->\n\nanalysis\n")
    result = subprocess.run(
        [sys.executable, "-m", "bench.hotpath", "--quick", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for row in ("floor: bare ASGI app on uvicorn", "floor: one PPP Invoke", "floor: bare parts", "platform, uvicorn"):
        assert f"| {row}" in result.stdout, row
    platform = next(line for line in result.stdout.splitlines() if line.startswith("| platform, uvicorn"))
    assert "answered" in platform and "MISSING" not in platform  # every answered invocation stored
    assert "| gateway CPU per warm invocation |" in result.stdout
    assert "| authentication (cached key) |" in result.stdout and "| **sum** |" in result.stdout  # bench.percall
    text = output.read_text()
    assert "old" not in text and "| floor: bare parts" in text and text.rstrip().endswith("analysis")
