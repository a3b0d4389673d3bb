"""``make bench``: start the platform on loopback, time invocations, print a markdown table.

Sequential cold (ephemeral) invocations per runtime and backend that can run here, with the
median of each phase taken from the invocation's own trace, beside the seed's figures, and
the floor: one PPP Health round trip on a warm Unix socket.

    python -m bench.run [--requests N] [--quick] [--output docs/PERFORMANCE.md]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx

from tests.support.platform import REPO, Platform, pids_using

PHASES = ("allocation", "init", "execution", "release", "total")
SEED_MS = {"python": 5600, "java": 5700}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def sequential(client: httpx.Client, operation: str, requests: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {phase: [] for phase in PHASES}
    samples["end_to_end"] = []
    client.post(f"/api/v1/calculate/{operation}", json={"operand1": 1, "operand2": 1})  # warm the gateway
    for i in range(requests):
        started = time.perf_counter()
        response = client.post(f"/api/v1/calculate/{operation}", json={"operand1": 10 + i, "operand2": 5})
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{operation}: HTTP {response.status_code}: {response.text}")
        samples["end_to_end"].append(elapsed)
        for phase in PHASES:
            samples[phase].append(response.json()["timings_ms"][phase])
    return samples


def health_floor(rounds: int) -> float:
    """Median PPP Health round trip on a warm Unix socket to a real Python worker."""
    sys.path.insert(0, str(REPO / "plugin_workers" / "python"))
    from platform_core.rpc import ppp_grpc, ppp_pb2

    directory = Path(tempfile.mkdtemp(prefix="ppb-", dir="/tmp"))
    socket = directory / "w.sock"
    worker = subprocess.Popen(
        [sys.executable, "-m", "ppp_sdk", "plugins.subtract_numbers:plugin", "--unix", str(socket)],
        cwd=REPO / "plugin_workers" / "python",
        env={"PYTHONPATH": str(REPO / "plugin_workers" / "python"), "PATH": "/usr/bin:/bin"},
    )
    try:
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            stub = ppp_grpc.PluginWorkerStub(channel)
            stub.Health(ppp_pb2.HealthRequest(), wait_for_ready=True, timeout=10)
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                stub.Health(ppp_pb2.HealthRequest())
                times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)
    finally:
        worker.terminate()
        worker.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="a few requests only (CI keeps the bench from rotting)")
    parser.add_argument("--output", type=Path, help="also write the table to this markdown file")
    options = parser.parse_args(argv)
    requests = 3 if options.quick else options.requests

    java = (REPO / "plugin_workers" / "java" / "build" / "ppp-java-worker.jar").exists()
    runtimes = ("python", "java") if java else ("python",)
    platform = Platform(runtimes=runtimes, absent_runtimes=()).start()
    rows = []
    try:
        with platform.client() as client:
            for runtime, operation in (("python", "subtract"), ("java", "add")):
                if runtime not in runtimes:
                    continue
                samples = sequential(client, operation, requests)
                rows.append((runtime, "ephemeral", "process", samples))
    finally:
        platform.stop()
    leftovers = pids_using(str(platform.socket_root))
    floor = health_floor(200 if not options.quick else 20)

    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on this machine ({requests} sequential requests per row, "
        f"`python -m bench.run`). Milliseconds.",
        "",
        "| runtime | mode | backend | e2e p50 | e2e p90 | e2e p99 | allocation | init | execution | release "
        "| seed total | vs seed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for runtime, mode, backend, samples in rows:
        p50 = statistics.median(samples["end_to_end"])
        lines.append(
            f"| {runtime} | {mode} | {backend} | {p50:.1f} | {percentile(samples['end_to_end'], 90):.1f} | "
            f"{percentile(samples['end_to_end'], 99):.1f} | "
            + " | ".join(f"{statistics.median(samples[p]):.1f}" for p in PHASES[:4])
            + f" | ~{SEED_MS[runtime]} | {SEED_MS[runtime] / p50:.0f}x faster |"
        )
    lines += ["", f"Floor: one PPP Health round trip on a warm Unix socket: median {floor:.2f} ms."]
    if leftovers:
        lines.append(f"WARNING: {len(leftovers)} worker process(es) outlived the platform: {leftovers}")
    table = "\n".join(lines)
    print(table)
    if options.output:
        options.output.parent.mkdir(parents=True, exist_ok=True)
        options.output.write_text("# Performance\n\n" + table + "\n")
    if leftovers:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
