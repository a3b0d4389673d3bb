"""The browser benchmark runs in CI with one run per scenario, so that it cannot rot."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.browser import CHROMIUM
from tests.support.platform import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_browser_bench_prints_its_table_and_keeps_the_text_around_it(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium")
    output = tmp_path / "PERFORMANCE.md"
    output.write_text("# Performance\n\n<!-- browser-bench:start -->\nold\n<!-- browser-bench:end -->\n\nanalysis\n")
    result = subprocess.run(
        [sys.executable, "-m", "bench.browser", "--runs", "1", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for row in ("| subtract, ephemeral |", "| subtract, pooled (warm) |", "| slow_count, 100 steps of 10 ms |"):
        line = next(line for line in result.stdout.splitlines() if line.startswith(row))
        cells = [cell.strip() for cell in line.split("|")[2:5]]
        assert all(cell.replace(".", "").isdigit() for cell in cells), line  # every figure was measured
    text = output.read_text()
    assert "old" not in text and text.rstrip().endswith("analysis") and "| target |" in text
