"""``python -m bench.runtimes [--rounds N]``: what a worker of each runtime costs to start and stop.

For every built-in runtime (and a worker written from the proto alone, as a runtime added with
``manage.py runtime add``), an in-process supervisor on the process backend starts a worker from
the runtime's recipe, waits for PPP Health (the readiness probe), invokes it once and stops it
(SIGTERM): N rounds, medians and p90 in ms. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
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
    rounds = parser.parse_args(argv).rounds
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


if __name__ == "__main__":
    main()
