"""The PPP conformance kit: start a worker command exactly as a supervisor would, then check it.

``manage.py pppcheck`` prints these checks for plugin authors; ``tests/conformance`` runs the
same checks against the platform's own Python, Java and Node workers. The worker is started by
the supervisor's own code (``Supervisor`` with the ``process`` backend: scrubbed environment,
private socket directory, rlimits, process group, readiness probe, SIGTERM then SIGKILL), so
what passes here runs under a supervisor. The checks speak PPP over the worker's Unix socket
and depend on nothing but ``protos/plugin_protocol.proto``.

Each check passes, fails (with what was wrong and how to fix it) or is skipped (with why).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from platform_core.rpc import ppp_grpc, ppp_pb2
from platform_core.runtimes import ROOT, RuntimeSpec
from platform_core.supervisor.backends.process import Launcher, ProcessBackend
from platform_core.supervisor.errors import SupervisorError
from platform_core.supervisor.model import Limits, PluginRef, PoolSpec, Worker
from platform_core.supervisor.service import Supervisor

# What a gateway written in any language accepts in one message (gRPC's default): bigger results
# must come as ResultChunk messages.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# A "large" result: above the SDKs' chunk size.
LARGE_RESULT_BYTES = 1024 * 1024
# How long a worker may outlive its supervisor (killed) before the check fails.
ORPHAN_TIMEOUT_S = 5.0
REPEATS = 3
CONTEXT = ppp_pb2.Context(tenant_id="pppcheck", user_id="pppcheck", session_id="pppcheck", request_id="pppcheck-1")

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass
class Target:
    """What to check: a runtime's recipe (the worker command) and how to exercise its primitive."""

    spec: RuntimeSpec
    entrypoint: str = ""
    # The primitive to invoke; empty: the first one the worker's Health lists.
    primitive: str = ""
    # Arguments the primitive accepts (JSON), and what its output must contain (a subset), if known.
    arguments: bytes = b"{}"
    expect: dict[str, Any] | None = None
    # Arguments the primitive rejects as invalid_input (valid JSON); None: not checked.
    invalid_arguments: bytes | None = None
    # Arguments that make a result over 1 MiB (to check chunking); None: not checked.
    large_arguments: bytes | None = None
    # The primitive reports progress (at least one Progress before its terminal message).
    progress: bool = True
    concurrency: int = 4
    memory_mb: int = 256
    timeout_s: float = 30.0
    ready_timeout_s: float = 30.0
    stop_grace_s: float = 2.0
    # Also check that the worker exits when its supervisor is killed.
    orphan_check: bool = True


@dataclass
class CheckResult:
    name: str
    status: str
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL


@dataclass
class Report:
    results: list[CheckResult] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    # What the worker wrote on stdout and stderr (its last bytes), for failures.
    output: str = ""

    def __getitem__(self, name: str) -> CheckResult:
        return next(result for result in self.results if result.name == name)

    @property
    def counts(self) -> dict[str, int]:
        return {status: sum(r.status == status for r in self.results) for status in (PASS, FAIL, SKIP)}

    @property
    def ok(self) -> bool:
        return not any(result.failed for result in self.results)

    def summary(self) -> str:
        counts = self.counts
        return f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped"


# The checks, in the order they run (tests/conformance asserts on them by name).
CHECKS = [
    "start",
    "health",
    "init",
    "invoke",
    "repeat",
    "bad_json",
    "bad_utf8",
    "unknown_primitive",
    "invalid_arguments",
    "large_result",
    "concurrent",
    "sigterm",
    "orphan",
]


class CheckFailed(Exception):
    """A check's finding; its message says what was wrong."""


def _kinds(messages: list[ppp_pb2.PluginMessage]) -> list[str]:
    return [message.WhichOneof("kind") or "empty" for message in messages]


def _well_formed(messages: list[ppp_pb2.PluginMessage]) -> None:
    """PPP's stream rules: exactly one terminal message, last; sane progress, chunks and sizes."""
    names = _kinds(messages)
    if not messages:
        raise CheckFailed("the Invoke stream was empty: it must end with one Completed or Failed message")
    terminals = [i for i, name in enumerate(names) if name in ("completed", "failed")]
    if not terminals:
        raise CheckFailed(
            f"the Invoke stream ended without a terminal message (received: {', '.join(names)}): "
            "every Invoke must end with exactly one Completed or Failed"
        )
    if terminals != [len(names) - 1]:
        raise CheckFailed(f"exactly one terminal message must end the stream, got: {', '.join(names)}")
    chunks = [m.result_chunk for m in messages if m.HasField("result_chunk")]
    if chunks and names[-1] != "completed":
        raise CheckFailed("ResultChunk messages must be followed by Completed, not Failed")
    if [chunk.index for chunk in chunks] != list(range(len(chunks))):
        raise CheckFailed(f"ResultChunk indexes must count 0, 1, 2...: got {[c.index for c in chunks]}")
    if chunks and messages[-1].completed.output:
        raise CheckFailed("Completed.output must be empty when the result came as ResultChunk messages")
    for message in messages:
        if message.HasField("progress"):
            percent = message.progress.percent
            if not (math.isfinite(percent) and 0.0 <= percent <= 100.0):
                raise CheckFailed(f"Progress.percent must be within 0..100, got {percent}")
        if (size := message.ByteSize()) > MAX_MESSAGE_BYTES:
            raise CheckFailed(
                f"a {names[messages.index(message)]} message of {size} bytes: gRPC clients refuse messages "
                f"over {MAX_MESSAGE_BYTES} bytes by default; send results over 1 MiB as ResultChunk messages"
            )


def _output(messages: list[ppp_pb2.PluginMessage]) -> Any:
    """The result of a Completed stream, decoded (chunks concatenated)."""
    data = b"".join(m.result_chunk.data for m in messages if m.HasField("result_chunk"))
    data += messages[-1].completed.output
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckFailed(f"the result is not a UTF-8 JSON document ({exc}): {data[:200]!r}") from None


def _describe(messages: list[ppp_pb2.PluginMessage]) -> str:
    names = _kinds(messages)
    counted = {name: names.count(name) for name in dict.fromkeys(names)}
    return ", ".join(f"{count} {name}" if count > 1 else name for name, count in counted.items())


def _subset_mismatch(expected: Any, actual: Any, where: str = "output") -> str | None:
    """Where ``actual`` differs from ``expected`` (objects: every expected key, recursively)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{where} should be an object, got {json.dumps(actual)[:80]}"
        for key, value in expected.items():
            if key not in actual:
                return f"{where} has no {key!r}"
            if (problem := _subset_mismatch(value, actual[key], f"{where}.{key}")) is not None:
                return problem
        return None
    if isinstance(expected, int | float) and isinstance(actual, int | float) and not isinstance(actual, bool):
        return None if math.isclose(expected, actual, rel_tol=1e-9) else f"{where} is {actual}, expected {expected}"
    return None if expected == actual else f"{where} is {json.dumps(actual)[:80]}, expected {json.dumps(expected)}"


class _Session:
    """The running worker and a PPP channel to it."""

    def __init__(self, target: Target, worker: Worker) -> None:
        self.target = target
        self.worker = worker
        self.channel = grpc.aio.insecure_channel(
            worker.address, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        )
        self.stub = ppp_grpc.PluginWorkerStub(self.channel)
        self.primitive = target.primitive

    async def invoke(self, arguments: bytes, primitive: str | None = None) -> list[ppp_pb2.PluginMessage]:
        request = ppp_pb2.InvokeRequest(
            primitive=primitive or self.primitive, arguments=arguments, request_id="pppcheck-1", context=CONTEXT
        )
        messages: list[ppp_pb2.PluginMessage] = []
        try:
            async for message in self.stub.Invoke(request, timeout=self.target.timeout_s):
                messages.append(message)
        except grpc.aio.AioRpcError as exc:
            received = f" (received: {', '.join(_kinds(messages))})" if messages else ""
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise CheckFailed(
                    f"no terminal Completed or Failed message within {self.target.timeout_s:g} s{received}"
                ) from None
            raise CheckFailed(f"Invoke failed with gRPC status {exc.code().name}: {exc.details()}{received}") from None
        _well_formed(messages)
        return messages

    async def completed(self, arguments: bytes) -> tuple[list[ppp_pb2.PluginMessage], Any]:
        messages = await self.invoke(arguments)
        if messages[-1].HasField("failed"):
            failed = messages[-1].failed
            raise CheckFailed(
                f"the primitive {self.primitive!r} refused the arguments: Failed({failed.code}, {failed.message!r}); "
                "give arguments it accepts (pppcheck --arguments)"
            )
        return messages, _output(messages)

    async def serving(self) -> None:
        try:
            reply = await self.stub.Health(ppp_pb2.HealthRequest(), timeout=5)
        except grpc.aio.AioRpcError as exc:
            raise CheckFailed(f"Health failed afterwards ({exc.code().name}): the worker must survive it") from None
        if reply.status != ppp_pb2.HealthResponse.SERVING:
            raise CheckFailed("Health is no longer SERVING afterwards: the worker must survive it")

    async def refused(self, arguments: bytes, code: str, primitive: str | None = None) -> str:
        messages = await self.invoke(arguments, primitive)
        if not messages[-1].HasField("failed"):
            raise CheckFailed(f"expected Failed({code}), got Completed: {_describe(messages)}")
        failed = messages[-1].failed
        if failed.code != code:
            raise CheckFailed(f"expected Failed code {code!r}, got {failed.code!r} ({failed.message!r})")
        if not failed.message:
            raise CheckFailed(f"Failed({code}) must say why in its message (it is shown to the caller)")
        await self.serving()
        return f"Failed({code}, {failed.message[:80]!r}); still SERVING"

    async def close(self) -> None:
        await self.channel.close()


# --- the checks (each returns what it found, or raises CheckFailed) ------------------------------


async def _health(session: _Session) -> str:
    reply = await session.stub.Health(ppp_pb2.HealthRequest(), timeout=5)
    if reply.status != ppp_pb2.HealthResponse.SERVING:
        raise CheckFailed(f"Health status is {ppp_pb2.HealthResponse.Status.Name(reply.status)}, not SERVING")
    if not reply.primitives:
        raise CheckFailed("Health must list the primitives the worker hosts")
    if not session.primitive:
        session.primitive = reply.primitives[0]
    elif session.primitive not in reply.primitives:
        raise CheckFailed(f"Health lists {list(reply.primitives)}, not {session.primitive!r}")
    return f"SERVING, primitives {', '.join(reply.primitives)}"


async def _init(session: _Session) -> str:
    reply = await session.stub.Init(ppp_pb2.InitRequest(context=CONTEXT), timeout=5)
    if not reply.ok:
        raise CheckFailed(f"Init answered ok=false: {reply.message!r}")
    if session.primitive not in reply.primitives:
        raise CheckFailed(f"Init must list the primitives the worker hosts: got {list(reply.primitives)}")
    return f"ok ({reply.message!r})" if reply.message else "ok"


async def _invoke(session: _Session) -> str:
    messages, output = await session.completed(session.target.arguments)
    if session.target.progress and "progress" not in _kinds(messages):
        raise CheckFailed("no Progress message before Completed (pass --no-progress if the primitive reports none)")
    if session.target.expect is not None and (problem := _subset_mismatch(session.target.expect, output)):
        raise CheckFailed(problem)
    return f"{_describe(messages)}; output {json.dumps(output)[:100]}"


async def _repeat(session: _Session) -> str:
    for _ in range(REPEATS):
        await session.completed(session.target.arguments)
    return f"{REPEATS} more invocations on the same worker completed (pooled workers are reused)"


async def _bad_json(session: _Session) -> str:
    return await session.refused(b'{"truncated": ', "invalid_input")


async def _bad_utf8(session: _Session) -> str:
    return await session.refused(b'{"text": "\xc3\x28"}', "invalid_input")


async def _unknown_primitive(session: _Session) -> str:
    return await session.refused(session.target.arguments, "unknown_primitive", primitive="pppcheck-no-such-primitive")


async def _invalid_arguments(session: _Session) -> str | None:
    if session.target.invalid_arguments is None:
        return None
    return await session.refused(session.target.invalid_arguments, "invalid_input")


async def _large_result(session: _Session) -> str | None:
    if session.target.large_arguments is None:
        return None
    messages, output = await session.completed(session.target.large_arguments)
    size = len(json.dumps(output))
    chunks = _kinds(messages).count("result_chunk")
    if size <= LARGE_RESULT_BYTES:
        raise CheckFailed(f"the result was {size} bytes: give --large-arguments that make one over 1 MiB")
    if not chunks:
        raise CheckFailed(f"a result of {size} bytes came in one Completed message: send it as ResultChunk messages")
    return f"{size} bytes in {chunks} ResultChunk messages, reassembled in order"


async def _concurrent(session: _Session) -> str:
    count = session.target.concurrency
    started = time.monotonic()
    calls = [asyncio.ensure_future(session.completed(session.target.arguments)) for _ in range(count)]
    try:
        # Health must answer while the worker is busy: supervisors probe idle and busy workers alike.
        await session.serving()
        await asyncio.gather(*calls)
    finally:
        for call in calls:
            call.cancel()
    took_ms = 1000 * (time.monotonic() - started)
    return f"{count} invocations at once all completed in {took_ms:.0f} ms; Health answered meanwhile"


CHECK_FUNCTIONS: dict[str, Callable[[_Session], Any]] = {
    "health": _health,
    "init": _init,
    "invoke": _invoke,
    "repeat": _repeat,
    "bad_json": _bad_json,
    "bad_utf8": _bad_utf8,
    "unknown_primitive": _unknown_primitive,
    "invalid_arguments": _invalid_arguments,
    "large_result": _large_result,
    "concurrent": _concurrent,
}
SKIP_REASONS = {
    "invalid_arguments": "no --invalid-arguments given",
    "large_result": "no --large-arguments given (arguments that make a result over 1 MiB)",
}


# --- running them ------------------------------------------------------------------------------


def plugin_ref(target: Target) -> PluginRef:
    return PluginRef(
        name="pppcheck",
        runtime=target.spec.name,
        # Supervisors refuse plugins without one; a command without {entrypoint} ignores it.
        entrypoint=target.entrypoint or "-",
        limits=Limits(memory_bytes=target.memory_mb * 1024 * 1024),
        # A pool of one worker: {concurrency} is the pool's max_concurrency, and a retired pooled
        # worker is stopped as a supervisor stops any worker (SIGTERM, then SIGKILL after the grace).
        pool=PoolSpec(min_idle=0, max_workers=1, max_concurrency=target.concurrency, max_uses=0),
        runtime_spec=target.spec,
    )


def _supervisor(target: Target, socket_root: Path, supervisor_id: str) -> Supervisor:
    backend = ProcessBackend(
        supervisor_id=supervisor_id,
        socket_root=socket_root,
        launchers={target.spec.name: Launcher.from_spec(target.spec)},
        zygote=bool(target.spec.zygote_command),
    )
    return Supervisor(
        runtime=target.spec.name,
        supervisor_id=supervisor_id,
        backends={"process": backend},
        default_backend="process",
        max_workers=2,
        ready_timeout_s=target.ready_timeout_s,
        stop_grace_s=target.stop_grace_s,
    )


async def run_checks(target: Target, *, on_result: Callable[[CheckResult], None] | None = None) -> Report:
    """Start the worker as a supervisor would and run every check; results in ``CHECKS`` order."""
    report = Report()

    def record(name: str, status: str, detail: str = "") -> None:
        result = CheckResult(name, status, detail)
        report.results.append(result)
        if on_result is not None:
            on_result(result)

    if problems := target.spec.errors():
        record("start", FAIL, "; ".join(problems))
        return report
    # Short: a Unix socket path is limited to 108 bytes.
    socket_root = Path(tempfile.mkdtemp(prefix="pppc-", dir="/tmp"))
    supervisor_id = f"pppcheck-{os.getpid()}"
    try:
        started = await _run(target, socket_root, supervisor_id, report, record)
        if not started:
            for name in CHECKS[len(report.results) :]:
                record(name, SKIP, "the worker did not start")
        elif target.orphan_check:
            record("orphan", *await _orphan(target, socket_root))
        else:
            record("orphan", SKIP, "not asked for")
    finally:
        await _clean(socket_root, supervisor_id)
    return report


async def _run(
    target: Target, socket_root: Path, supervisor_id: str, report: Report, record: Callable[..., None]
) -> bool:
    """Start the worker, run the PPP checks and stop it (SIGTERM); False if it did not start."""
    supervisor = _supervisor(target, socket_root, supervisor_id)
    plugin = plugin_ref(target)
    report.command = Launcher.from_spec(target.spec).command(plugin, socket_root / "WORKER-DIR" / "worker.sock")
    await supervisor.start()
    session: _Session | None = None
    try:
        started = time.monotonic()
        try:
            worker, _events, _warm, _lease = await supervisor.allocate(plugin, timeout_s=target.ready_timeout_s)
        except SupervisorError as exc:
            report.output = _last_output(supervisor)
            record("start", FAIL, str(exc))
            return False
        record("start", PASS, f"Health SERVING {1000 * (time.monotonic() - started):.0f} ms after the start")
        session = _Session(target, worker)
        for name, check in CHECK_FUNCTIONS.items():
            if name != "health" and not session.primitive:
                record(name, SKIP, "the worker lists no primitive")
                continue
            try:
                detail = await check(session)
            except CheckFailed as exc:
                record(name, FAIL, str(exc))
            except grpc.aio.AioRpcError as exc:
                record(name, FAIL, f"gRPC status {exc.code().name}: {exc.details()}")
            else:
                record(name, SKIP, SKIP_REASONS[name]) if detail is None else record(name, PASS, detail)
        await session.close()
        session = None
        record("sigterm", *await _sigterm(supervisor, worker, target.stop_grace_s))
        report.output = worker.output.text()
        return True
    finally:
        if session is not None:
            await session.close()
        await supervisor.shutdown()


def _last_output(supervisor: Supervisor) -> str:
    return "".join(worker.output.text() for worker in supervisor.workers.values())


async def _sigterm(supervisor: Supervisor, worker: Worker, grace_s: float) -> tuple[str, str]:
    """Stop the worker as a supervisor does: SIGTERM to its group, SIGKILL after the grace."""
    started = time.monotonic()
    outcome = await supervisor.release(worker.worker_id, reason="pppcheck done", retire=True)
    took_ms = 1000 * (time.monotonic() - started)
    if signal.SIGKILL in worker.runtime_state.get("signals_sent", set()):
        return FAIL, (
            f"still running {grace_s:g} s after SIGTERM, killed with SIGKILL: on SIGTERM, stop serving "
            "(finish or fail what is in flight) and exit"
        )
    if worker.exited_unasked:
        return FAIL, f"the worker exited on its own before it was stopped (code {outcome.exit_code})"
    return PASS, f"exited {took_ms:.0f} ms after SIGTERM (exit code {outcome.exit_code})"


# A stand-in supervisor in a process of its own, killed by the check: starts the worker with the
# supervisor's code, prints its pid once it serves, then waits to be killed.
_STAND_IN = """
import asyncio, json, sys
from pathlib import Path
from platform_core.supervisor import conformance
from platform_core.runtimes import ROOT, RuntimeSpec

async def main():
    config = json.loads(sys.argv[1])
    spec = RuntimeSpec.create(**config.pop("spec"))
    target = conformance.Target(spec=spec, **config.pop("target"))
    supervisor = conformance._supervisor(target, Path(config["socket_root"]), config["supervisor_id"])
    await supervisor.start()
    worker, *_ = await supervisor.allocate(conformance.plugin_ref(target), timeout_s=target.ready_timeout_s)
    print(worker.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def _orphan(target: Target, socket_root: Path) -> tuple[str, str]:
    """Kill a stand-in supervisor (SIGKILL: no clean-up) and watch its worker exit on its own."""
    config = {
        "spec": {"name": target.spec.name, **target.spec.as_json()},
        "target": {"entrypoint": target.entrypoint, "concurrency": target.concurrency, "memory_mb": target.memory_mb},
        "socket_root": str(socket_root),
        "supervisor_id": f"pppcheck-{os.getpid()}-orphan",
    }
    stand_in = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _STAND_IN,
        json.dumps(config),
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(stand_in.stdout.readline(), target.ready_timeout_s + 5)  # type: ignore[union-attr]
        if not line.strip():
            error = (await stand_in.stderr.read()).decode(errors="replace")[-500:]  # type: ignore[union-attr]
            return FAIL, f"the stand-in supervisor could not start the worker: {error}"
        pid = int(line)
    except TimeoutError:
        return FAIL, "the stand-in supervisor's worker did not start in time"
    finally:
        killed = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            stand_in.kill()
        await stand_in.wait()
    while _running(pid):
        if time.monotonic() - killed > ORPHAN_TIMEOUT_S:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            return FAIL, (
                f"the worker outlived its supervisor by more than {ORPHAN_TIMEOUT_S:g} s: exit when the process "
                "PPP_PARENT_PID is gone (PR_SET_PDEATHSIG, or watch your parent pid)"
            )
        await asyncio.sleep(0.02)
    return PASS, f"exited {1000 * (time.monotonic() - killed):.0f} ms after its supervisor was killed"


def _running(pid: int) -> bool:
    """True unless the process is gone or a zombie (an orphan waits for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _clean(socket_root: Path, supervisor_id: str) -> None:
    """Whatever the stand-in left (worker directories, a zygote, cgroups) goes, as a restarted supervisor's reap."""
    for which in (supervisor_id, f"{supervisor_id}-orphan"):
        backend = ProcessBackend(supervisor_id=which, socket_root=socket_root, launchers={}, zygote=False)
        await backend.reap_orphans()
        await backend.close()
    shutil.rmtree(socket_root, ignore_errors=True)
