"""``python -m bench.runtimes [--rounds N]``: what a worker of each runtime costs to start and stop.

For every built-in runtime (and a worker written from the proto alone, as a runtime added with
``manage.py runtime add``), an in-process supervisor on the process backend starts a worker from
the runtime's recipe, waits for PPP Health (the readiness probe), invokes it once and stops it
(SIGTERM): N rounds, medians and p90 in ms. Prints a Markdown table.

Then stem cells (issue 18): per runtime and backend, an ephemeral invocation at the supervisor
spawned (or forked from the zygote) and from a stem cell, beside its floor (a bare JVM start, a
bare ``docker run``), and what an idle stem cell costs (CPU, resident memory).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import grpc

from bench.run import percentile
from platform_core.rpc import ppp_grpc, ppp_pb2
from platform_core.runtimes import BUILTIN_RUNTIMES, RuntimeSpec, unavailable
from platform_core.supervisor.backends.process import Launcher, ProcessBackend
from platform_core.supervisor.model import PluginRef
from platform_core.supervisor.service import Supervisor

PROTO_ONLY = RuntimeSpec.create(
    "proto", ["{python}", "{root}/tests/support/proto_worker.py", "--unix", "{socket}", "--max-concurrency", "1"]
)
# (label, runtime recipe, entrypoint, primitive, fork from a zygote)
CASES = [
    ("python (zygote)", BUILTIN_RUNTIMES["python"], "plugins.subtract_numbers:plugin", "subtract_numbers", True),
    ("python (spawned)", BUILTIN_RUNTIMES["python"], "plugins.subtract_numbers:plugin", "subtract_numbers", False),
    ("java", BUILTIN_RUNTIMES["java"], "platform.workers.AddPluginService", "add_numbers", False),
    ("node", BUILTIN_RUNTIMES["node"], "plugins/count_primes", "count_primes", False),
    ("proto-only python (runtime add)", PROTO_ONLY, "-", "shout", False),
]
ARGUMENTS = {
    "subtract_numbers": b'{"operand1": 10, "operand2": 5}',
    "add_numbers": b'{"operand1": 10, "operand2": 5}',
    "count_primes": b'{"limit": 1000}',
    "shout": b'{"text": "hi"}',
}


async def measure(spec: RuntimeSpec, entrypoint: str, primitive: str, zygote: bool, rounds: int) -> dict[str, list]:
    root = Path(tempfile.mkdtemp(prefix="pbr-", dir="/tmp"))
    backend = ProcessBackend(
        supervisor_id="bench", socket_root=root, launchers={spec.name: Launcher.from_spec(spec)}, zygote=zygote
    )
    supervisor = Supervisor(
        runtime=spec.name, supervisor_id="bench", backends={"process": backend}, default_backend="process"
    )
    plugin = PluginRef(name=primitive, runtime=spec.name, entrypoint=entrypoint, runtime_spec=spec)
    times: dict[str, list] = {"ready": [], "invoke": [], "stop": []}
    await supervisor.start()
    try:
        if zygote:  # the template process starts with the supervisor, not with the first worker
            await asyncio.sleep(1.0)
        for _ in range(rounds):
            started = time.perf_counter()
            worker, *_ = await supervisor.allocate(plugin)
            ready = time.perf_counter()
            async with grpc.aio.insecure_channel(worker.address) as channel:
                request = ppp_pb2.InvokeRequest(primitive=primitive, arguments=ARGUMENTS[primitive], request_id="b")
                messages = [m async for m in ppp_grpc.PluginWorkerStub(channel).Invoke(request, timeout=30)]
            assert messages[-1].HasField("completed"), messages[-1]
            invoked = time.perf_counter()
            await supervisor.release(worker.worker_id)
            stopped = time.perf_counter()
            times["ready"].append(1000 * (ready - started))
            times["invoke"].append(1000 * (invoked - ready))
            times["stop"].append(1000 * (stopped - invoked))
    finally:
        await supervisor.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.runtimes", description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--stem-cells-only", action="store_true", help="only the stem cells' tables")
    parser.add_argument("--no-gateway", action="store_true", help="without the stem cells' rows through the gateway")
    options = parser.parse_args(argv)
    rounds = options.rounds
    if options.stem_cells_only:
        print(stem_cell_table(rounds))
        if not options.no_gateway:
            print()
            print(gateway_table(rounds))
        return
    print(f"Worker start (allocate → Health SERVING), first invoke, stop (SIGTERM → reaped); {rounds} rounds, ms\n")
    print("| runtime | ready p50 | ready p90 | invoke p50 | stop p50 |")
    print("|---|---:|---:|---:|---:|")
    for label, spec, entrypoint, primitive, zygote in CASES:
        if (missing := unavailable(spec)) is not None:
            print(f"| {label} | not measured: {missing} | | | |")
            continue
        times = asyncio.run(measure(spec, entrypoint, primitive, zygote, rounds))
        ready, invoke, stop = times["ready"], times["invoke"], times["stop"]
        print(
            f"| {label} | {percentile(ready, 50):.0f} | {percentile(ready, 90):.0f} | "
            f"{percentile(invoke, 50):.1f} | {percentile(stop, 50):.0f} |"
        )
    print()
    print(stem_cell_table(rounds))
    if not options.no_gateway:
        print()
        print(gateway_table(rounds))


# --- stem cells (issue 18) ------------------------------------------------------------------

# (label, runtime, backend, entrypoint, primitive)
STEM_CASES = [
    ("java", "java", "process", "add_numbers", "add_numbers"),
    ("python", "python", "process", "plugins.subtract_numbers:plugin", "subtract_numbers"),
    ("python", "python", "docker", "plugins.subtract_numbers:plugin", "subtract_numbers"),
    ("java", "java", "docker", "add_numbers", "add_numbers"),
]
IDLE_WINDOW_S = 5.0


def _docker_backend(supervisor_id: str):
    """The docker backend from the settings, or None without an engine or images."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_core.settings")
    django.setup()
    from platform_core.supervisor.backends.docker import DockerBackend, DockerUnavailable

    try:
        return DockerBackend.from_settings(supervisor_id=supervisor_id, max_workers=8)
    except DockerUnavailable:
        return None


async def ephemeral_round(supervisor: Supervisor, plugin: PluginRef, primitive: str) -> tuple[float, float, bool]:
    """One ephemeral invocation at the supervisor: allocate, Init, Invoke, release.
    (allocation ms, total ms, whether the worker came from a stem cell)."""
    started = time.perf_counter()
    worker, events, _, _ = await supervisor.allocate(plugin)
    allocated = time.perf_counter()
    async with grpc.aio.insecure_channel(worker.address) as channel:
        stub = ppp_grpc.PluginWorkerStub(channel)
        assert (await stub.Init(ppp_pb2.InitRequest(), timeout=30)).ok
        request = ppp_pb2.InvokeRequest(primitive=primitive, arguments=ARGUMENTS[primitive], request_id="b")
        messages = [m async for m in stub.Invoke(request, timeout=30)]
    assert messages[-1].HasField("completed"), messages[-1]
    await supervisor.release(worker.worker_id)
    done = time.perf_counter()
    from_stem = any("from stem cell" in e.detail for e in events)
    return 1000 * (allocated - started), 1000 * (done - started), from_stem


def _processes_of(worker) -> list[int]:
    from platform_core.supervisor.backends.process import _descendants

    if worker.pid:
        return [worker.pid, *_descendants(worker.pid)]
    container = worker.runtime_state.get("container")
    if container is None:
        return []
    container.reload()
    pid = int(container.attrs["State"]["Pid"] or 0)
    return [pid, *_descendants(pid)] if pid else []


def _usage(pids: list[int]) -> tuple[float, float]:
    """(CPU seconds used so far, resident MiB) of these processes."""
    ticks, rss = 0, 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
        rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return ticks / os.sysconf("SC_CLK_TCK"), rss / 2**20


async def measure_stem_cells(
    runtime: str, backend_name: str, entrypoint: str, primitive: str, rounds: int, *, stem: bool
) -> dict[str, list] | None:
    """``rounds`` ephemeral invocations with one stem cell kept (waiting, before each round, until
    it is refilled: the latency when one is ready) or without (spawn / zygote as before); with
    stem cells also an idle stem cell's CPU and memory over IDLE_WINDOW_S."""
    from platform_core.supervisor.stemcells import StemCellPlan

    root = Path(tempfile.mkdtemp(prefix="pbs-", dir="/tmp"))
    supervisor_id = f"bench-stem-{runtime}"
    backends: dict = {"process": ProcessBackend(supervisor_id=supervisor_id, socket_root=root)}
    if backend_name == "docker":
        docker = _docker_backend(supervisor_id)
        if docker is None:
            return None
        backends["docker"] = docker
    supervisor = Supervisor(
        runtime=runtime,
        supervisor_id=supervisor_id,
        backends=backends,
        default_backend=backend_name,
        stem_cells=[StemCellPlan(backend=backend_name, count=1)] if stem else [],
    )
    spec = BUILTIN_RUNTIMES[runtime]
    plugin = PluginRef(name=primitive, runtime=runtime, entrypoint=entrypoint, runtime_spec=spec, backend=backend_name)
    times: dict[str, list] = {"allocation": [], "total": [], "from_stem": [], "idle_cpu": [], "idle_mib": []}

    def ready() -> list:
        return [w for w in supervisor.workers.values() if w.stem_cell and w.state.name == "STEM_CELL"]

    async def settle() -> None:
        deadline = time.monotonic() + 120
        while stem and not ready() and time.monotonic() < deadline:  # noqa: ASYNC110 — polls the supervisor's state
            await asyncio.sleep(0.02)
        if not stem:  # the zygote (Python, process) starts with the supervisor
            await asyncio.sleep(1.0 if runtime == "python" and backend_name == "process" else 0)

    await supervisor.start()
    try:
        await settle()
        await ephemeral_round(supervisor, plugin, primitive)  # warm-up (page cache, image layers)
        for _ in range(rounds):
            await settle()
            allocation, total, from_stem = await ephemeral_round(supervisor, plugin, primitive)
            times["allocation"].append(allocation)
            times["total"].append(total)
            times["from_stem"].append(from_stem)
        if stem:
            await settle()
            pids = _processes_of(ready()[0])
            cpu_before, _ = _usage(pids)
            await asyncio.sleep(IDLE_WINDOW_S)  # measuring idle cost over a window of time
            cpu_after, mib = _usage(pids)
            times["idle_cpu"].append(100 * (cpu_after - cpu_before) / IDLE_WINDOW_S)
            times["idle_mib"].append(mib)
    finally:
        await supervisor.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    return times


def floor_jvm(runs: int = 5) -> float:
    """A bare JVM's start and exit (``java -version`` with the workers' flags), median ms."""
    flags = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-XX:-UsePerfData", "-Xshare:auto"]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(["java", *flags, "-version"], check=True, capture_output=True)
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def floor_docker_run(image: str, runs: int = 5) -> float | None:
    """A bare ``docker run --rm --network none IMAGE`` of ``true``, median ms (None without it)."""
    if shutil.which("docker") is None:
        return None
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        return None
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "--entrypoint", "true", image],
            check=True,
            capture_output=True,
        )
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def stem_cell_table(rounds: int) -> str:
    lines = [
        f"Ephemeral invocation at the supervisor (allocate → Health SERVING, Init, Invoke, release), {rounds} rounds "
        "each, ms. With stem cells: one kept, each round once it is refilled (the latency while one is ready). "
        "Idle: one waiting stem cell's CPU (% of a core) and resident memory over "
        f"{IDLE_WINDOW_S:g} s.",
        "",
        "| runtime | backend | spawned: allocation p50 | total p50 | stem cell: allocation p50 | total p50 "
        "| from stem cell | floor | idle CPU % | idle MiB |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for label, runtime, backend, entrypoint, primitive in STEM_CASES:
        spec = BUILTIN_RUNTIMES[runtime]
        if (missing := unavailable(spec)) is not None:
            lines.append(f"| {label} | {backend} | not measured: {missing} | | | | | | | |")
            continue
        spawned = asyncio.run(measure_stem_cells(runtime, backend, entrypoint, primitive, rounds, stem=False))
        stem = asyncio.run(measure_stem_cells(runtime, backend, entrypoint, primitive, rounds, stem=True))
        if spawned is None or stem is None:
            lines.append(f"| {label} | {backend} | not measured: no Docker Engine or image | | | | | | | |")
            continue
        if backend == "docker":
            floor = floor_docker_run(spec.image)
            floor_text = f"bare docker run {floor:.0f}" if floor else "-"
        elif runtime == "java":
            floor_text = f"bare JVM start {floor_jvm():.0f}"
        else:
            floor_text = "zygote fork (the spawned column)"
        lines.append(
            f"| {label} | {backend} | {percentile(spawned['allocation'], 50):.1f} | "
            f"{percentile(spawned['total'], 50):.1f} | {percentile(stem['allocation'], 50):.1f} | "
            f"{percentile(stem['total'], 50):.1f} | {sum(stem['from_stem'])}/{rounds} | {floor_text} | "
            f"{stem['idle_cpu'][0]:.2f} | {stem['idle_mib'][0]:.0f} |"
        )
    return "\n".join(lines)


def gateway_table(rounds: int) -> str:
    """The issue's rows through the whole platform (gateway, supervisor, worker): ephemeral p50
    with a ready stem cell (each request once the board shows one) and with stem cells off."""
    import logging

    from bench.run import OPERATIONS, docker_available
    from tests.support.platform import Platform, wait_for

    logging.getLogger("httpx").setLevel(logging.WARNING)

    lines = [
        f"Through the gateway (HTTP request to answer, release included), {rounds} sequential requests per row "
        "once a stem cell is ready (stem cells on) or as they come (off), ms:",
        "",
        "| runtime | backend | stem cells off: e2e p50 | allocation p50 | on: e2e p50 | allocation p50 "
        "| init p50 | release p50 | from stem cell |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    backends = ["process", "docker"] if docker_available() else ["process"]
    for backend in backends:
        runtimes = ("python", "java")
        results: dict[tuple[str, bool], dict[str, list]] = {}
        for stem in (False, True):
            entries = [f"{runtime}/{backend}=1" for runtime in runtimes if stem]
            platform = Platform(
                runtimes=runtimes,
                absent_runtimes=(),
                backend=backend,
                extra_env={"LOG_LEVEL": "ERROR", "STEM_CELLS": ",".join(entries)},
            ).start()
            try:
                with platform.client() as client:
                    for runtime in runtimes:
                        plugin, arguments = OPERATIONS[runtime]
                        got: dict[str, list] = {"e2e": [], "allocation": [], "init": [], "release": [], "stem": []}

                        def ready(runtime: str = runtime) -> bool:
                            boards = client.get("/api/v1/workers").json()["supervisors"]
                            return any(
                                w["state"] == "stem_cell"
                                for b in boards
                                if b["runtime"] == runtime
                                for w in b["workers"]
                            )

                        client.post(f"/api/v1/plugins/{plugin}/invoke", json=arguments)  # warm the gateway
                        for _ in range(rounds):
                            if stem:
                                wait_for(ready, what=f"a {runtime} stem cell", timeout_s=120)
                            started = time.perf_counter()
                            response = client.post(f"/api/v1/plugins/{plugin}/invoke", json=arguments)
                            got["e2e"].append(1000 * (time.perf_counter() - started))
                            body = response.json()
                            if response.status_code != 200:
                                raise SystemExit(f"{plugin} on {backend}: HTTP {response.status_code}: {response.text}")
                            for phase in ("allocation", "init", "release"):
                                got[phase].append(body["timings_ms"][phase])
                            trace = client.get(f"/api/v1/invocations/{body['invocation_id']}").json()["trace"]
                            got["stem"].append(
                                any("from stem cell" in e["detail"] for e in trace if e["kind"] == "worker_allocating")
                            )
                        results[(runtime, stem)] = got
            finally:
                platform.stop()
        for runtime in runtimes:
            off, on = results[(runtime, False)], results[(runtime, True)]
            lines.append(
                f"| {runtime} | {backend} | {percentile(off['e2e'], 50):.1f} | "
                f"{percentile(off['allocation'], 50):.1f} | "
                f"{percentile(on['e2e'], 50):.1f} | {percentile(on['allocation'], 50):.1f} | "
                f"{percentile(on['init'], 50):.1f} | {percentile(on['release'], 50):.1f} | {sum(on['stem'])}/{rounds} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
