"""``python -m bench.runtimes`` runs in CI with one round, so that it cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.platform import REPO

pytestmark = pytest.mark.e2e


def test_bench_runtimes_prints_a_row_per_runtime_and_the_stem_cells_rows():
    result = subprocess.run(
        [sys.executable, "-m", "bench.runtimes", "--rounds", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for label in ("python (zygote)", "python (spawned)", "java", "node", "proto-only python (runtime add)"):
        assert re.search(rf"^\| {re.escape(label)} \| \d+ \| \d+ \| [\d.]+ \| \d+ \|$", result.stdout, re.M), label
    # Stem cells (issue 18): at the supervisor, spawned beside from a stem cell, with the floor and
    # the idle cost; then the same through the gateway. Docker rows say why when there is no engine.
    number = r"[\d.]+"
    for runtime, backend in (("java", "process"), ("python", "process"), ("python", "docker"), ("java", "docker")):
        measured = (
            rf"^\| {runtime} \| {backend} \| {number} \| {number} \| {number} \| {number} \| 1/1 \| [^|]+ \| "
            rf"{number} \| {number} \|$"
        )
        skipped = rf"^\| {runtime} \| {backend} \| not measured: "
        assert re.search(measured, result.stdout, re.M) or (
            backend == "docker" and re.search(skipped, result.stdout, re.M)
        ), (runtime, backend)
    for runtime in ("python", "java"):
        cells = r" \| ".join([number] * 6)
        gateway_row = rf"^\| {runtime} \| process \| {cells} \| 1/1 \|$"
        assert re.search(gateway_row, result.stdout, re.M), runtime
