"""bench/observability.py runs in CI in a short mode, so that it cannot rot."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.platform import REPO

pytestmark = pytest.mark.e2e


def test_bench_observability_prints_its_table():
    result = subprocess.run(
        [sys.executable, "-m", "bench.observability", "--requests", "10", "--rounds", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| off |" in result.stdout and "| on (OTLP/gRPC) |" in result.stdout
    assert "30 of 30 invocations" in result.stdout  # every traced invocation's spans reached the receiver
    assert "target <= 5%" in result.stdout and "timed alone" in result.stdout
