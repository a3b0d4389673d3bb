"""The warm hot path under load (issue 13): the platform beside the floors its parts set.

    python -m bench.hotpath [--seconds S] [--quick] [--output docs/PERFORMANCE.md]

Load comes from ``wrk`` (bench/wrk.py), posting ``{"operand1": 10, "operand2": 5}`` over
keep-alive connections, at 1, 16 and 64 clients for S seconds each. Every row prints p50/p90/p99
at 1 client, invocations/s and p50/p99 at 16 and 64, errors, and the CPU milliseconds per
invocation of the gateway, the supervisor and the worker(s) (from /proc over the whole row),
and wrk's own CPU. Floors, measured in the same run:

* the bare ASGI app (bench/apps.py ``bare``) on uvicorn, granian and daphne;
* one PPP Invoke round trip to a warm SDK worker over its Unix socket (sequential, grpc.aio);
* the bare parts: uvicorn + one PPP Invoke per request (``parts``), no auth/trace/database;

and the platform (pooled subtract, two warm workers): on uvicorn (the default), with the history
write disabled (``BENCH_SKIP_HISTORY``, to show its cost), with one dashboard WebSocket watching
every invocation live, on granian and on daphne, and Java's pooled add. For each platform row the
benchmark checks that every answered invocation is in the history afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import wrk
from bench.run import JAVA_JAR, python_worker, write_output
from tests.support.platform import REPO, Platform, free_port, wait_for_port

BODY = json.dumps({"operand1": 10, "operand2": 5}).encode()
START, END = "<!-- bench-hotpath:start -->", "<!-- bench-hotpath:end -->"
SERVERS = {
    "uvicorn": lambda app, port: [
        *("-m", "uvicorn", app, "--port", str(port), "--loop", "uvloop", "--http", "httptools"),
        *("--no-access-log", "--log-level", "warning", "--lifespan", "off"),
    ],
    "granian": lambda app, port: [
        *("-m", "granian", "--interface", "asgi", "--port", str(port), "--loop", "uvloop"),
        *("--no-access-log", "--log-level", "warning", app),
    ],
    "daphne": lambda app, port: ["-m", "daphne", "-p", str(port), app],
}
# Targets of issue 13 (ms / per s / ratio).
TARGETS = {"p50": 5.0, "p99": 15.0, "per_s_64": 500.0, "gateway_cpu": 1.5, "ratio": 3.0}


@dataclass
class Result:
    name: str
    loads: list[wrk.Load] = field(default_factory=list)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per answered request, per group
    note: str = ""
    recorded: str = ""

    def at(self, clients: int) -> wrk.Load | None:
        return next((load for load in self.loads if load.clients == clients), None)


def _run_levels(
    url: str, levels: tuple[int, ...], seconds: float, meter: wrk.CpuMeter, *, api_key: str = ""
) -> tuple[list[wrk.Load], dict[str, float]]:
    wrk.wrk_post(url, BODY, clients=4, seconds=min(1.0, seconds), api_key=api_key)  # warm-up
    meter.start()
    loads = [wrk.wrk_post(url, BODY, clients=c, seconds=seconds, api_key=api_key) for c in levels]
    used = meter.stop()
    answered = sum(load.requests for load in loads) or 1
    return loads, {name: ms / answered for name, ms in used.items()} | {
        "wrk": sum(load.wrk_cpu_ms for load in loads) / answered
    }


# --- floors ---------------------------------------------------------------------------------


def _serve(server: str, app: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, *SERVERS[server](app, port)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process)
    return process, port


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def floor_bare(server: str, levels: tuple[int, ...], seconds: float) -> Result:
    process, port = _serve(server, "bench.apps:bare")
    try:
        meter = wrk.CpuMeter({"gateway": lambda: wrk.tree(process.pid)})
        loads, cpu = _run_levels(f"http://127.0.0.1:{port}/", levels, seconds, meter)
    finally:
        _stop(process)
    return Result(f"floor: bare ASGI app on {server}", loads, cpu)


class _Worker:
    """A Python SDK worker (pooled subtract) on a Unix socket of its own."""

    def __enter__(self) -> _Worker:
        self.directory = Path(tempfile.mkdtemp(prefix="ppb-", dir="/tmp"))
        self.socket = self.directory / "w.sock"
        self.process = python_worker(self.socket)
        return self

    def __exit__(self, *exc: object) -> None:
        _stop(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


def floor_ppp(rounds: int) -> Result:
    """Sequential PPP Invoke round trips (Init once) to a warm worker: p50/p90/p99, worker CPU."""
    import grpc

    from platform_core.rpc import ppp_grpc, ppp_pb2

    async def run(socket: Path, worker_pid: int) -> tuple[list[float], dict[str, float]]:
        async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
            stub = ppp_grpc.PluginWorkerStub(channel)
            await stub.Init(ppp_pb2.InitRequest(), wait_for_ready=True, timeout=10)
            request = ppp_pb2.InvokeRequest(primitive="subtract_numbers", arguments=BODY)
            for _ in range(100):
                [m async for m in stub.Invoke(request)]
            meter = wrk.CpuMeter({"worker": lambda: [worker_pid], "client": lambda: [os.getpid()]})
            meter.start()
            times = []
            for _ in range(rounds):
                begun = time.perf_counter()
                [m async for m in stub.Invoke(request)]
                times.append((time.perf_counter() - begun) * 1000)
            return times, {k: v / rounds for k, v in meter.stop().items()}

    with _Worker() as worker:
        times, cpu = asyncio.run(run(worker.socket, worker.process.pid))
    ordered = sorted(times)
    pick = lambda q: ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]  # noqa: E731
    load = wrk.Load(1, rounds, 0, sum(times) / 1000, pick(50), pick(90), pick(99), 0.0)
    return Result("floor: one PPP Invoke (grpc.aio client, sequential)", [load], cpu)


def floor_parts(levels: tuple[int, ...], seconds: float) -> Result:
    with _Worker() as worker:
        process, port = _serve("uvicorn", "bench.apps:parts", {"PARTS_WORKER_SOCKET": str(worker.socket)})
        try:
            meter = wrk.CpuMeter({"gateway": lambda: wrk.tree(process.pid), "worker": lambda: [worker.process.pid]})
            loads, cpu = _run_levels(f"http://127.0.0.1:{port}/", levels, seconds, meter)
        finally:
            _stop(process)
    return Result("floor: bare parts (uvicorn + one PPP Invoke)", loads, cpu)


# --- the platform ---------------------------------------------------------------------------


def _recorded(client: httpx.Client, plugin: str) -> int:
    return client.get("/api/v1/invocations", params={"plugin": plugin, "page_size": 1}).json()["count"]


def _settled_count(client: httpx.Client, plugin: str) -> int:
    """The history's count once the writer has caught up (the same value twice, 0.3 s apart)."""
    last = -1
    for _ in range(50):
        now = _recorded(client, plugin)
        if now == last:
            return now
        last = now
        time.sleep(0.3)
    return last


class _Watcher:
    """One dashboard WebSocket on /ws/live/ that receives every live message during the run."""

    def __init__(self, platform: Platform) -> None:
        self.session = platform.staff_session()
        self.url = platform.url
        self.messages = 0
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        from websockets.asyncio.client import connect

        async with connect(
            self.url.replace("http://", "ws://") + "/ws/live/",
            origin=self.url,
            additional_headers={"Cookie": f"sessionid={self.session}"},
        ) as websocket:
            self.ready.set()
            while not self.stop.is_set():
                try:
                    await asyncio.wait_for(websocket.recv(), 0.2)
                    self.messages += 1
                except TimeoutError:
                    pass

    def __enter__(self) -> _Watcher:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the dashboard WebSocket did not connect")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def platform_row(
    name: str,
    levels: tuple[int, ...],
    seconds: float,
    *,
    env: dict[str, str] | None = None,
    runtime: str = "python",
    watch: bool = False,
) -> Result:
    base = {"python": "subtract_numbers", "java": "add_numbers"}[runtime]
    plugin = base + "_pooled"
    platform = Platform(runtimes=(runtime,), absent_runtimes=(), extra_env={"LOG_LEVEL": "ERROR", **(env or {})})
    platform.start()
    try:
        platform.add_plugin_variant(
            base, plugin, mode="pooled", min_idle=2, max_workers=2, max_concurrency=32, queue_timeout_s=10.0, max_uses=0
        )
        with platform.client() as client:
            client.post(f"/api/v1/plugins/{plugin}/invoke", json={"operand1": 10, "operand2": 5}).raise_for_status()
            workers = [
                w["pid"]
                for s in client.get("/api/v1/workers").json()["supervisors"]
                for w in s["workers"]
                if w["plugin"] == plugin and w.get("pid")
            ]
            gateway = platform.processes["gateway"].pid
            supervisor = platform.processes[f"supervisor-{runtime}"].pid
            meter = wrk.CpuMeter(
                {
                    "gateway": lambda: wrk.tree(gateway),
                    "supervisor": lambda: [supervisor],
                    "worker": lambda: [p for w in workers for p in wrk.tree(w)],
                }
            )
            url = f"{platform.url}/api/v1/plugins/{plugin}/invoke"
            wrk.wrk_post(url, BODY, clients=4, seconds=1.0, api_key=platform.api_key)  # warm-up
            before = _settled_count(client, plugin)
            watcher = _Watcher(platform) if watch else None
            with watcher or contextlib.nullcontext():
                meter.start()
                loads = [wrk.wrk_post(url, BODY, clients=c, seconds=seconds, api_key=platform.api_key) for c in levels]
                used = meter.stop()
            answered = sum(load.requests for load in loads) or 1
            cpu = {k: v / answered for k, v in used.items()} | {"wrk": sum(x.wrk_cpu_ms for x in loads) / answered}
            result = Result(name, loads, cpu)
            if watcher:
                result.note = f"{watcher.messages} WebSocket messages"
            if not (env or {}).get("BENCH_SKIP_HISTORY"):
                stored = _settled_count(client, plugin) - before
                # wrk counts answered requests; a request cut off at the end of a level may be
                # stored unanswered, so stored may exceed answered by at most one per connection.
                ok = answered <= stored <= answered + sum(levels)
                result.recorded = f"{stored} of {answered} answered{'' if ok else ' — MISSING'}"
    finally:
        platform.stop()
    return result


def _redis_answers() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# --- the table ------------------------------------------------------------------------------


def _cell(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _load_cell(load: wrk.Load | None) -> str:
    if load is None:
        return "-"
    return f"{load.per_s:.0f}, {load.p50_ms:.2f} / {load.p99_ms:.2f}"


def render(results: list[Result], seconds: float, floors: dict[str, Result]) -> str:
    bare = floors.get("uvicorn")
    ppp = floors.get("ppp")
    floor_ms = (bare.at(1).p50_ms + ppp.at(1).p50_ms) if bare and ppp and bare.at(1) and ppp.at(1) else None
    lines = [
        f"wrk, {seconds:g} s per level, keep-alive; CPU ms per answered request over the row (from /proc); "
        f"ratio: p50 at 1 client ÷ (bare uvicorn p50 + PPP Invoke p50{f' = {floor_ms:.2f} ms' if floor_ms else ''}).",
        "",
        "| row | 1 client p50 / p90 / p99 ms | 16: /s, p50 / p99 ms | 64: /s, p50 / p99 ms | errors | "
        "CPU ms/req gateway · supervisor · worker · wrk | ratio | recorded |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in results:
        one = r.at(1)
        cpu = " · ".join(_cell(r.cpu_ms.get(k)) for k in ("gateway", "supervisor", "worker", "wrk"))
        ratio = f"{one.p50_ms / floor_ms:.1f}x" if one and floor_ms and not r.name.startswith("floor") else ""
        cells = [
            f"{r.name}{f' ({r.note})' if r.note else ''}",
            " / ".join(_cell(v) for v in ((one.p50_ms, one.p90_ms, one.p99_ms) if one else (None,) * 3)),
            *(_load_cell(r.at(clients)) for clients in (16, 64)),
            str(sum(x.errors for x in r.loads)),
            cpu,
            ratio,
            r.recorded,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    main = next((r for r in results if r.name.startswith("platform, uvicorn")), None)
    if main and main.at(1):
        rows = [
            ("warm subtract, 1 client, p50", main.at(1).p50_ms, TARGETS["p50"], "ms", True),
            ("warm subtract, 1 client, p99", main.at(1).p99_ms, TARGETS["p99"], "ms", True),
            (
                "warm subtract, 64 clients, invocations/s",
                main.at(64) and main.at(64).per_s,
                TARGETS["per_s_64"],
                "/s",
                False,
            ),
            ("gateway CPU per warm invocation", main.cpu_ms.get("gateway"), TARGETS["gateway_cpu"], "ms", True),
            (
                "p50 ÷ (bare server p50 + PPP p50)",
                floor_ms and main.at(1).p50_ms / floor_ms,
                TARGETS["ratio"],
                "x",
                True,
            ),
        ]
        lines += ["", "| target (issue 13) | measured | target | met |", "|---|---:|---:|---|"]
        for label, value, target, unit, lower in rows:
            met = value is not None and (value <= target if lower else value >= target)
            bound = f"{'≤' if lower else '≥'} {target:g} {unit}"
            lines.append(f"| {label} | {_cell(value)} {unit} | {bound} | {'yes' if met else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per load level")
    parser.add_argument("--quick", action="store_true", help="few rows, 1 s levels (CI keeps it from rotting)")
    parser.add_argument("--output", type=Path, help="also write the table into this markdown file")
    options = parser.parse_args(argv)
    if not wrk.available():
        raise SystemExit("wrk is not installed (apt-get install wrk; `make bench` does it)")
    seconds = 1.0 if options.quick else options.seconds
    levels = (1, 16, 64)
    floors: dict[str, Result] = {}
    results: list[Result] = []
    for server in ("uvicorn",) if options.quick else ("uvicorn", "granian", "daphne"):
        floors[server] = floor_bare(server, levels, seconds)
        results.append(floors[server])
    floors["ppp"] = floor_ppp(200 if options.quick else 2000)
    results.append(floors["ppp"])
    results.append(floor_parts(levels, seconds))
    results.append(platform_row("platform, uvicorn (default)", levels, seconds))
    if not options.quick:
        if _redis_answers():
            # What `make run` does when a local Redis answers: one gateway process per core.
            env = {
                "REDIS_URL": "redis://127.0.0.1:6379/0",
                "REDIS_PREFIX": f"bench-{os.getpid()}",
                "GATEWAY_PROCESSES": "2",
            }
            results.append(platform_row("platform, uvicorn, 2 processes + Redis", levels, seconds, env=env))
        results.append(
            platform_row("platform, uvicorn, history write off", levels, seconds, env={"BENCH_SKIP_HISTORY": "1"})
        )
        results.append(platform_row("platform, uvicorn, one live watcher", levels, seconds, watch=True))
        results.append(platform_row("platform, granian", levels, seconds, env={"GATEWAY_SERVER": "granian"}))
        results.append(platform_row("platform, daphne", levels, seconds, env={"GATEWAY_SERVER": "daphne"}))
        if JAVA_JAR.exists():
            results.append(platform_row("platform, uvicorn, Java add", levels, seconds, runtime="java"))
    table = render(results, seconds, floors)
    # The gateway's own per-request steps, one by one (bench/percall.py, a process of its own).
    percall = subprocess.run(
        [sys.executable, "-m", "bench.percall", "--calls", "300" if options.quick else "2000"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    table += "\n\n" + percall[percall.index("CPU per call") :].strip()
    print(table)
    if options.output:
        write_output(options.output, table, start=START, end=END)
    if any("MISSING" in r.recorded for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
