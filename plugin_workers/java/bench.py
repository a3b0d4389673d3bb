"""Measure the Java worker: start-to-ready time and warm Invoke round trips.

Run from the repository root after ``plugin_workers/java/build.sh``:

    .venv/bin/python plugin_workers/java/bench.py [--runs 10] [--service add_numbers] [--java-option=-Xmx64m ...]

Start-to-ready is what a supervisor waits for: from spawning ``java`` to the first Health
reply that says SERVING, polled over the Unix socket as soon as the socket file appears.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from platform_core.rpc._gen import plugin_protocol_pb2 as pb  # noqa: E402
from platform_core.rpc._gen import plugin_protocol_pb2_grpc as pb_grpc  # noqa: E402

JVM_FLAGS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-XX:-UsePerfData", "-Xss512k"]
JAR = "plugin_workers/java/build/ppp-java-worker.jar"


def start_worker(service: str, socket_path: Path, java_options: list[str]) -> subprocess.Popen:
    command = ["java", *JVM_FLAGS, *java_options, "-jar", JAR, "--service", service, "--unix", str(socket_path)]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)


def wait_serving(process: subprocess.Popen, socket_path: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"worker exited with code {process.returncode}")
        if socket_path.exists():
            # A fresh channel per attempt: a failed one would wait out gRPC's reconnect back-off.
            with grpc.insecure_channel(f"unix:{socket_path}") as channel:
                try:
                    response = pb_grpc.PluginWorkerStub(channel).Health(pb.HealthRequest(), timeout=2)
                    if response.status == pb.HealthResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
        time.sleep(0.001)
    raise SystemExit(f"worker not serving after {timeout_s} s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def milliseconds(samples: list[float]) -> str:
    ordered = sorted(samples)
    return (
        f"median {statistics.median(ordered) * 1000:.1f} ms, min {ordered[0] * 1000:.1f}, "
        f"max {ordered[-1] * 1000:.1f} (n={len(ordered)})"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far: less sensitive to a busy machine than wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_start(
    service: str, socket_path: Path, java_options: list[str], runs: int
) -> tuple[list[float], list[float]]:
    """Wall time and the worker's CPU time from spawn to the first SERVING Health, per run."""
    wall, cpu = [], []
    for _ in range(runs):
        started = time.monotonic()
        process = start_worker(service, socket_path, java_options)
        try:
            wait_serving(process, socket_path)
            wall.append(time.monotonic() - started)
            cpu.append(cpu_seconds(process.pid))
        finally:
            stop(process)
    return wall, cpu


def round_trips(call: Callable[[], object], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        sent = time.monotonic()
        call()
        samples.append(time.monotonic() - sent)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--invokes", type=int, default=500)
    parser.add_argument("--service", default="add_numbers")
    parser.add_argument("--java-option", action="append", default=[], help="extra JVM option, repeatable")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ppp-bench-") as directory:
        socket_path = Path(directory) / "w.sock"
        wall, cpu = measure_start(options.service, socket_path, options.java_option, options.runs)
        print(f"start to first SERVING Health: {milliseconds(wall)}")
        print(f"worker CPU time until then: {milliseconds(cpu)}; load average {os.getloadavg()[0]:.1f}")

        process = start_worker(options.service, socket_path, options.java_option)
        try:
            wait_serving(process, socket_path)
            with grpc.insecure_channel(f"unix:{socket_path}") as channel:
                stub = pb_grpc.PluginWorkerStub(channel)
                primitive = stub.Health(pb.HealthRequest()).primitives[0]
                arguments = json.dumps({"operand1": 10, "operand2": 5}).encode()
                request = pb.InvokeRequest(primitive=primitive, arguments=arguments)

                def invoke() -> None:
                    messages = list(stub.Invoke(request))
                    assert messages[-1].HasField("completed"), messages

                print(f"first Invoke on a fresh worker: {milliseconds(round_trips(invoke, 1))}")
                # The first fifth of each series still warms the JIT up: left out.
                warm_up = options.invokes // 5
                warm_invokes = round_trips(invoke, options.invokes)[warm_up:]
                print(f"warm Invoke round trip: {milliseconds(warm_invokes)}")
                warm_health = round_trips(lambda: stub.Health(pb.HealthRequest()), options.invokes)[warm_up:]
                print(f"warm Health round trip: {milliseconds(warm_health)}")
        finally:
            stop(process)


if __name__ == "__main__":
    main()
