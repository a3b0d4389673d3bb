"""Workers on another host: what the supervisor's PPP relay costs, beside the local path, in one run.

Two comparisons, each measured back to back on the same machine:

* **PPP**: a warm pooled ``subtract_numbers`` worker, ``Invoke`` called on the gateway's own
  channels (``worker_route.open_channel``) directly on its Unix socket vs through its
  supervisor's relay over mutual TLS (a real ``runsupervisor`` process on loopback): sequential
  p50/p90 and throughput with ``CLIENTS`` concurrent streams. This isolates the relay: nothing
  else differs.
* **HTTP**: the pooled invocation end to end through a gateway whose worker is local (a
  ``Platform``) vs on a simulated other host (``MultiHost``: a private mount namespace; root
  only, else the row is skipped with the reason).

Targets (docs/DEPLOYMENT.md): the relay adds at most 1 ms to a warm p50 and keeps at least 80% of
the local throughput.

    python -m bench.hosts [--requests N] [--duration S] [--quick]
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
from pathlib import Path

import grpc

from bench.run import Row, percentile, sequential, throughput
from platform_core.certs import write_dev_certs
from tests.support.hosts import MultiHost, WorkerHost, can_simulate_hosts
from tests.support.platform import REPO, Platform, free_port, wait_for_port

CLIENTS = 16
ARGUMENTS = json.dumps({"operand1": 10, "operand2": 5}).encode()
POOL = {"mode": "pooled", "min_idle": 1, "max_workers": 1, "max_concurrency": 32, "queue_timeout_s": 5.0}


def _tls_env(directory: Path, stem: str) -> dict[str, str]:
    return {
        "SUPERVISOR_TLS_CERT_FILE": str(directory / f"{stem}.crt"),
        "SUPERVISOR_TLS_KEY_FILE": str(directory / f"{stem}.key"),
        "SUPERVISOR_TLS_CA_FILE": str(directory / "ca.crt"),
    }


async def _ppp_measure(channel: grpc.aio.Channel, requests: int, duration_s: float) -> dict:
    from platform_core.rpc import ppp_grpc, ppp_pb2

    stub = ppp_grpc.PluginWorkerStub(channel)
    request = ppp_pb2.InvokeRequest(primitive="subtract_numbers", arguments=ARGUMENTS)

    async def once() -> float:
        started = time.perf_counter()
        async for _ in stub.Invoke(request, timeout=10):
            pass
        return (time.perf_counter() - started) * 1000

    for _ in range(5):  # connection, TLS handshake, the worker's first calls
        await once()
    latencies = [await once() for _ in range(requests)]
    done = 0
    until = time.perf_counter() + duration_s

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < until:
            await once()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return {"latencies": latencies, "per_s": done / (time.perf_counter() - started)}


def measure_ppp(requests: int, duration_s: float, rounds: int) -> dict[str, dict]:
    """Direct socket vs relay (mTLS) to one warm worker of a real supervisor process."""
    from platform_core.gateway.worker_route import WorkerRoute, open_channel
    from platform_core.rpc import sup_grpc, sup_pb2
    from platform_core.supervisor.ppp_relay import relay_target
    from platform_core.tls import TlsMaterial, secure_channel

    workdir = Path(tempfile.mkdtemp(prefix="pph-", dir="/tmp"))
    tls = workdir / "tls"
    write_dev_certs(tls, supervisor_names=[])
    port = free_port()
    env = {
        **os.environ,
        "SUPERVISOR_SOCKET_ROOT": str(workdir / "s"),
        "PLATFORM_VAR_DIR": str(workdir),
        "SQLITE_PATH": str(workdir / "db.sqlite3"),
        "LOG_LEVEL": "ERROR",
        **_tls_env(tls, "supervisor"),
    }
    command = [sys.executable, "manage.py", "runsupervisor", "--runtime=python", f"--listen=127.0.0.1:{port}"]
    supervisor = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    gateway_tls = TlsMaterial(*((tls / name).read_bytes() for name in ("gateway.crt", "gateway.key", "ca.crt")))

    async def run() -> dict[str, dict]:
        async with secure_channel(f"127.0.0.1:{port}", gateway_tls, options=[]) as control:
            api = sup_grpc.RuntimeSupervisorStub(control)
            ref = sup_pb2.PluginRef(
                name="subtract_numbers",
                runtime="python",
                entrypoint="plugins.subtract_numbers:plugin",
                pool=sup_pb2.PoolSpec(min_idle=1, max_workers=1, max_concurrency=64, queue_timeout_ms=5000),
            )
            allocated = await api.AllocateWorker(sup_pb2.AllocateWorkerRequest(plugin=ref), timeout=30)
            handle, lease = allocated.worker, allocated.lease

            async def keep_lease() -> None:
                # The lease is renewed as a gateway would; unrenewed, the supervisor takes the
                # worker back after LEASE_TTL_S, in the middle of a long run.
                usage = sup_pb2.RenewLeasesRequest(leases=[sup_pb2.LeaseUsage(lease_id=lease.lease_id, busy=True)])
                while True:
                    await asyncio.sleep(max(lease.ttl_ms / 3000, 0.5))
                    await api.RenewLeases(usage, timeout=10)

            keeper = asyncio.ensure_future(keep_lease())
            # The gateway's own channels: direct, and through the relay as for a worker on another host.
            direct_route = WorkerRoute(handle.worker_id, handle.address, None, "")
            relay_route = WorkerRoute(
                handle.worker_id, relay_target(handle.worker_id), f"127.0.0.1:{handle.relay_port}", ""
            )
            measured: dict[str, list[dict]] = {"direct": [], "relay": []}
            async with (
                open_channel(direct_route, tls=gateway_tls) as direct,
                open_channel(relay_route, tls=gateway_tls) as relay,
            ):
                for _ in range(rounds):  # in turns, as measure_http
                    for name, channel in (("direct", direct), ("relay", relay)):
                        measured[name].append(await _ppp_measure(channel, requests // rounds, duration_s / rounds))
            keeper.cancel()
            await api.ReleaseWorker(sup_pb2.ReleaseWorkerRequest(worker_id=handle.worker_id), timeout=10)
            return {name: _combined(r) for name, r in measured.items()}

    try:
        wait_for_port(port, supervisor)
        return asyncio.run(run())
    finally:
        supervisor.terminate()
        supervisor.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)


def _combined(rounds: list[dict]) -> dict:
    """Rounds of one row, taken in turns with the other row's: latencies pooled, throughput's median."""
    latencies = [value for r in rounds for value in r["latencies"]]
    return {
        "p50": statistics.median(latencies),
        "p90": percentile(latencies, 90),
        "per_s": statistics.median(r["per_s"] for r in rounds),
    }


def _http_round(platform: Platform, label: str, requests: int, duration_s: float) -> dict:
    with platform.client() as client:
        row = sequential(client, "subtract_pooled", {"operand1": 10, "operand2": 5}, requests, Row("python", label, ""))
    load = throughput(platform, "subtract_pooled", {"operand1": 10, "operand2": 5}, CLIENTS, duration_s)
    return {"latencies": row.e2e, "per_s": load["per_s"]}


def measure_http(requests: int, duration_s: float, rounds: int) -> dict[str, dict]:
    """Both platforms up at once, measured in turns (local, remote, local, ...): the load of a
    shared machine drifts, and turns spread it over both rows."""
    platforms: dict[str, Platform] = {}
    skipped = can_simulate_hosts()
    try:
        platforms["local"] = Platform(extra_env={"LOG_LEVEL": "ERROR"}).start()
        if not skipped:
            platforms["remote"] = MultiHost(
                runtimes=(),
                absent_runtimes=(),
                worker_hosts=(WorkerHost("host-b", "127.0.1.2", ("python",)),),
                extra_env={"LOG_LEVEL": "ERROR"},
            ).start()
        for platform in platforms.values():
            platform.add_plugin_variant("subtract_numbers", "subtract_pooled", **POOL)
        measured: dict[str, list[dict]] = {name: [] for name in platforms}
        for _ in range(rounds):
            for name, platform in platforms.items():
                measured[name].append(_http_round(platform, name, requests // rounds or 1, duration_s / rounds))
    finally:
        for platform in platforms.values():
            platform.stop()
    results = {name: _combined(r) for name, r in measured.items()}
    if skipped:
        results["remote"] = {"skipped": skipped}
    return results


def render(
    ppp: dict[str, dict], http: dict[str, dict], requests: tuple[int, int], duration_s: float, rounds: int
) -> str:
    lines = [
        f"Workers on another host: p50/p90 of {requests[0]} (PPP) and {requests[1]} (HTTP) sequential warm calls per "
        f"row, throughput (median of the rounds) with {CLIENTS} concurrent clients for {duration_s:g} s per row; "
        f"rows measured in {rounds} alternating rounds; a shared 2-core machine.",
        "",
        "| path | p50 (ms) | p90 (ms) | throughput (/s) | relay adds to p50 | share of local throughput |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def pair(rows: dict[str, dict], local: str, remote: str, names: tuple[str, str]) -> None:
        base = rows[local]
        lines.append(f"| {names[0]} | {base['p50']:.2f} | {base['p90']:.2f} | {base['per_s']:.0f} | | |")
        other = rows[remote]
        if "skipped" in other:
            lines.append(f"| {names[1]} | skipped: {other['skipped']} | | | | |")
            return
        added, share = other["p50"] - base["p50"], other["per_s"] / base["per_s"]
        added_mark, share_mark = ("met" if added <= 1.0 else "missed"), ("met" if share >= 0.8 else "missed")
        lines.append(
            f"| {names[1]} | {other['p50']:.2f} | {other['p90']:.2f} | {other['per_s']:.0f} | "
            f"{added:+.2f} ms ({added_mark}: ≤ 1 ms) | {share:.0%} ({share_mark}: ≥ 80%) |"
        )

    pair(ppp, "direct", "relay", ("PPP Invoke, direct Unix socket", "PPP Invoke, supervisor relay (mTLS)"))
    pair(
        http, "local", "remote", ("HTTP pooled subtract, worker local", "HTTP pooled subtract, worker on another host")
    )
    return "\n".join(lines)


def hosts_table(requests: int, duration_s: float, rounds: int = 3) -> str:
    """The table of this module, for ``bench.run``."""
    counts = (requests * 10, requests * 3)
    ppp = measure_ppp(counts[0], duration_s, rounds)
    return render(ppp, measure_http(counts[1], duration_s, rounds), counts, duration_s, rounds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args(argv)
    requests, duration = (3, 1.0) if options.quick else (options.requests, options.duration)
    print(hosts_table(requests, duration, 1 if options.quick else options.rounds))


if __name__ == "__main__":
    main()
