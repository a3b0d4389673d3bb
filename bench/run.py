"""``make bench``: start the platform on loopback, measure it, print one markdown table.

Laid beside the seed's Timing Analysis tables:

* per runtime (Python subtract, Java add) and mode (ephemeral, pooled) and backend (process,
  docker where an engine answers): end-to-end p50/p90/p99 and each phase's median over N
  sequential requests (phases come from each invocation's own trace);
* pooled throughput and errors under 1, 16 and 64 concurrent clients for a fixed time, and
  whether every invocation was recorded;
* peak RSS of the gateway, each supervisor and one worker;
* the worker sandbox's cost: ephemeral and pooled rows with it on and off (``bench/sandbox.py``);
* the floors, measured in the same run: a raw PPP Health round trip on a warm Unix socket,
  a bare Python worker start (spawn to first Health reply), and a bare container start/stop
  where Docker is available; each row's ratio to its floor and to the seed's figure.

    python -m bench.run [--requests N] [--duration S] [--quick] [--output docs/PERFORMANCE.md]

The table is also written between the markers in ``--output``, keeping the text around them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx

from bench import sandbox as sandbox_bench
from tests.support.platform import REPO, Platform, pids_using

PHASES = ("allocation", "init", "execution", "release")
SEED_MS = {("python", "ephemeral"): 5600, ("java", "ephemeral"): 5700, ("python", "pooled"): 70, ("java", "pooled"): 70}
OPERATIONS = {
    "python": ("subtract_numbers", {"operand1": 10, "operand2": 5}),
    "java": ("add_numbers", {"operand1": 10, "operand2": 5}),
}
JAVA_JAR = REPO / "plugin_workers" / "java" / "build" / "ppp-java-worker.jar"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class Row:
    runtime: str
    mode: str
    backend: str
    e2e: list[float] = field(default_factory=list)
    phases: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})


def docker_available() -> bool:
    """A Docker Engine answers and this checkout has the docker backend."""
    script = REPO / "scripts" / "docker-engine.sh"
    if not script.exists() or not (REPO / "platform_core" / "supervisor" / "backends" / "docker.py").exists():
        return False
    return subprocess.run([str(script), "available"], capture_output=True).returncode == 0


# --- sequential latency -------------------------------------------------------------------


def sequential(client: httpx.Client, plugin: str, arguments: dict, requests: int, row: Row) -> Row:
    for _ in range(2):  # warm the gateway's caches and, for pools, the first worker
        client.post(f"/api/v1/plugins/{plugin}/invoke", json=arguments)
    for _ in range(requests):
        started = time.perf_counter()
        response = client.post(f"/api/v1/plugins/{plugin}/invoke", json=arguments)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{plugin}: HTTP {response.status_code}: {response.text}")
        row.e2e.append(elapsed)
        stored = response.json()["timings_ms"]
        for phase in PHASES:
            if stored[phase] is not None:
                row.phases[phase].append(stored[phase])
    return row


# --- throughput ---------------------------------------------------------------------------


async def _client(
    port: int, path: str, body: bytes, until: float, counts: dict[str, int], latencies: list[float], api_key: str
):
    """A minimal HTTP/1.1 keep-alive client: cheap enough not to starve the server of CPU."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {api_key}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            counts["ok" if status == 200 else "errors"] += 1
    finally:
        writer.close()


def throughput(platform: Platform, plugin: str, arguments: dict, clients: int, duration_s: float) -> dict:
    counts = {"ok": 0, "errors": 0}
    latencies: list[float] = []
    body = json.dumps(arguments).encode()

    async def run() -> None:
        until = time.perf_counter() + duration_s
        await asyncio.gather(
            *(
                _client(
                    platform.http_port,
                    f"/api/v1/plugins/{plugin}/invoke",
                    body,
                    until,
                    counts,
                    latencies,
                    platform.api_key,
                )
                for _ in range(clients)
            )
        )

    started = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "per_s": counts["ok"] / elapsed,
        "ok": counts["ok"],
        "errors": counts["errors"],
        "p50": statistics.median(latencies) if latencies else 0.0,
        "p99": percentile(latencies, 99) if latencies else 0.0,
    }


def recorded(client: httpx.Client, plugin: str) -> int:
    return client.get("/api/v1/invocations", params={"plugin": plugin, "page_size": 1}).json()["count"]


# --- memory -------------------------------------------------------------------------------


def peak_rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


# --- floors -------------------------------------------------------------------------------


def python_worker(socket: Path) -> subprocess.Popen:
    """A spawned Python SDK worker (subtract) serving PPP on ``socket``, outside any supervisor."""
    python_root = REPO / "plugin_workers" / "python"
    return subprocess.Popen(
        [sys.executable, "-s", "-m", "ppp_sdk", "plugins.subtract_numbers:plugin", "--unix", str(socket)],
        cwd=python_root,
        env={"PYTHONPATH": str(python_root), "PATH": os.environ["PATH"]},
    )


def floor_health_and_spawn(rounds: int) -> tuple[float, float]:
    """(median warm Health round trip, median spawn-to-first-Health) for a Python worker."""
    from platform_core.rpc import ppp_grpc, ppp_pb2

    spawn_times, rtts = [], []
    for attempt in range(5):
        directory = Path(tempfile.mkdtemp(prefix="ppb-", dir="/tmp"))
        socket = directory / "w.sock"
        started = time.perf_counter()
        worker = python_worker(socket)
        try:
            with grpc.insecure_channel(
                f"unix://{socket}",
                options=[("grpc.initial_reconnect_backoff_ms", 10), ("grpc.max_reconnect_backoff_ms", 10)],
            ) as ch:
                stub = ppp_grpc.PluginWorkerStub(ch)
                stub.Health(ppp_pb2.HealthRequest(), wait_for_ready=True, timeout=10)
                spawn_times.append((time.perf_counter() - started) * 1000)
                if attempt == 0:
                    for _ in range(rounds):
                        begun = time.perf_counter()
                        stub.Health(ppp_pb2.HealthRequest())
                        rtts.append((time.perf_counter() - begun) * 1000)
        finally:
            worker.terminate()
            worker.wait()
            shutil.rmtree(directory, ignore_errors=True)
    return statistics.median(rtts), statistics.median(spawn_times)


def floor_container(runs: int) -> float | None:
    image = "plugin-platform/python-base:local"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        return None
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", "--network", "none", image, "true"], check=True, capture_output=True)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


# --- the run ------------------------------------------------------------------------------


def measure_backend(
    backend: str, runtimes: tuple[str, ...], requests: int, duration_s: float, levels: tuple[int, ...]
) -> tuple[list[Row], list[dict], dict[str, float | None], list[int]]:
    platform = Platform(
        runtimes=runtimes, absent_runtimes=(), backend=backend, extra_env={"LOG_LEVEL": "ERROR"}
    ).start()
    rows, loads, memory = [], [], {}
    try:
        for runtime in runtimes:
            base, _ = OPERATIONS[runtime]
            platform.add_plugin_variant(
                base,
                base + "_pooled",
                mode="pooled",
                min_idle=2,
                max_workers=2,
                max_concurrency=32,
                queue_timeout_s=5.0,
                max_uses=0,
            )
        with platform.client() as client:
            for runtime in runtimes:
                base, arguments = OPERATIONS[runtime]
                rows.append(sequential(client, base, arguments, requests, Row(runtime, "ephemeral", backend)))
                rows.append(
                    sequential(client, base + "_pooled", arguments, requests * 3, Row(runtime, "pooled", backend))
                )
            if backend == "process":
                plugin, arguments = "subtract_numbers_pooled", OPERATIONS["python"][1]
                before = recorded(client, plugin)
                for level in levels:
                    loads.append(throughput(platform, plugin, arguments, level, duration_s))
                expected = sum(load["ok"] + load["errors"] for load in loads)
                loads.append({"recorded": recorded(client, plugin) - before, "expected": expected})
                workers = [
                    w
                    for s in client.get("/api/v1/workers").json()["supervisors"]
                    for w in s["workers"]
                    if w["plugin"] == plugin
                ]
                memory["gateway"] = peak_rss_mb(platform.processes["gateway"].pid)
                for runtime in runtimes:
                    memory[f"{runtime} supervisor"] = peak_rss_mb(platform.processes[f"supervisor-{runtime}"].pid)
                if workers:
                    memory["python worker (pooled)"] = peak_rss_mb(workers[0]["pid"])
    finally:
        platform.stop()
    return rows, loads, memory, pids_using(str(platform.socket_root))


def render(rows: list[Row], loads: list[dict], memory: dict, floors: dict, requests: int, duration_s: float) -> str:
    health, spawn, container = floors["health"], floors["spawn"], floors.get("container")
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} UTC on this machine ({os.cpu_count()} cores), "
        f"`python -m bench.run`: {requests} sequential requests per ephemeral row, {requests * 3} per pooled row. "
        "Milliseconds; phases are medians from each invocation's trace.",
        "",
        "| runtime | mode | backend | e2e p50 | e2e p90 | e2e p99 | allocation | init | execution | release "
        "| floor | x floor | seed | x faster than seed |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        p50 = statistics.median(row.e2e)
        if row.mode == "pooled":
            floor_name, floor = "Health RTT", health
        elif row.backend == "docker":
            floor_name, floor = "container run", container
        else:
            floor_name, floor = "worker spawn", spawn
        seed = SEED_MS[(row.runtime, row.mode)]
        phases = " | ".join(f"{statistics.median(row.phases[p]):.1f}" if row.phases[p] else "-" for p in PHASES)
        lines.append(
            f"| {row.runtime} | {row.mode} | {row.backend} | {p50:.1f} | {percentile(row.e2e, 90):.1f} | "
            f"{percentile(row.e2e, 99):.1f} | {phases} | {floor_name} {floor:.1f} | {p50 / floor:.1f} | ~{seed} | "
            f"{seed / p50:.0f}x |"
            if floor
            else f"| {row.runtime} | {row.mode} | {row.backend} | {p50:.1f} | {percentile(row.e2e, 90):.1f} | "
            f"{percentile(row.e2e, 99):.1f} | {phases} | - | - | ~{seed} | {seed / p50:.0f}x |"
        )
    if loads:
        lines += [
            "",
            f"Pooled throughput (python subtract, process backend, {duration_s:g} s per level):",
            "",
            "| clients | invocations/s | ok | errors | p50 | p99 |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {x['clients']} | {x['per_s']:.0f} | {x['ok']} | {x['errors']} | {x['p50']:.1f} | {x['p99']:.1f} |"
            for x in loads
            if "clients" in x
        ]
        check = loads[-1]
        verdict = "every one recorded" if check["recorded"] == check["expected"] else "MISSING RECORDS"
        lines += [
            "",
            f"Invocations recorded during the load: {check['recorded']} of {check['expected']} answered ({verdict}).",
        ]
    if memory:
        lines += [
            "",
            "Peak RSS (VmHWM): "
            + ", ".join(f"{name} {mb:.0f} MB" for name, mb in memory.items() if mb is not None)
            + ".",
        ]
    lines += [
        "",
        f"Floors: PPP Health round trip on a warm Unix socket {health:.2f} ms; Python worker spawn to "
        f"first Health reply {spawn:.0f} ms"
        + (
            f"; bare `docker run --rm --network none` {container:.0f} ms."
            if container
            else "; no Docker Engine, so no container floor."
        ),
    ]
    return "\n".join(lines)


def write_output(path: Path, table: str, *, start: str = START, end: str = END) -> None:
    """Put ``table`` between the markers ``start`` and ``end`` of ``path`` (added when missing)."""
    text = path.read_text() if path.exists() else f"# Performance\n\n{start}\n{end}\n"
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{head}{start}\n{table}\n{end}{tail}")


def main(argv: list[str] | None = None) -> None:
    from bench.hosts import hosts_table  # imports this module

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="sequential requests per ephemeral row")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per throughput level")
    parser.add_argument("--quick", action="store_true", help="a few seconds in all (CI keeps the bench from rotting)")
    parser.add_argument("--no-docker", action="store_true", help="skip the docker backend rows")
    parser.add_argument("--output", type=Path, help="also write the table into this markdown file")
    options = parser.parse_args(argv)
    requests, duration = (3, 1.0) if options.quick else (options.requests, options.duration)
    levels = (1, 16, 64)

    runtimes = ("python", "java") if JAVA_JAR.exists() else ("python",)
    rows, loads, memory, leftovers = measure_backend("process", runtimes, requests, duration, levels)
    floors: dict[str, float | None] = {}
    if not options.no_docker and docker_available():
        docker_rows, _, _, docker_leftovers = measure_backend("docker", runtimes, requests, duration, ())
        rows += docker_rows
        leftovers += docker_leftovers
        floors["container"] = floor_container(3 if options.quick else 10)
    floors["health"], floors["spawn"] = floor_health_and_spawn(50 if options.quick else 500)

    table = render(rows, loads, memory, floors, requests, duration)
    # The worker sandbox's cost: its own platforms, on and off side by side (bench/sandbox.py).
    sandbox_rows, sandbox_leftovers = sandbox_bench.measure(requests, runtimes)
    table += "\n\n" + sandbox_bench.render(sandbox_rows)
    leftovers += sandbox_leftovers
    # Workers on another host: the supervisor relay beside the local path (bench/hosts.py).
    table += "\n\n" + hosts_table(requests, duration, 1 if options.quick else 3)
    if leftovers:
        table += f"\n\nWARNING: {len(leftovers)} worker process(es) outlived the platform: {leftovers}"
    print(table)
    if options.output:
        write_output(options.output, table)
    if leftovers or (loads and loads[-1]["recorded"] != loads[-1]["expected"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
