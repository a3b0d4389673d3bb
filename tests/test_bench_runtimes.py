"""``python -m bench.runtimes`` runs in CI with one round, so that it cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.platform import REPO

pytestmark = pytest.mark.e2e


def test_bench_runtimes_prints_a_row_per_runtime():
    result = subprocess.run(
        [sys.executable, "-m", "bench.runtimes", "--rounds", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for label in ("python (zygote)", "python (spawned)", "java", "node", "proto-only python (runtime add)"):
        assert re.search(rf"^\| {re.escape(label)} \| \d+ \| \d+ \| [\d.]+ \| \d+ \|$", result.stdout, re.M), label
