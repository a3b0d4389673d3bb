"""PPP gRPC server hosting one plugin: Init, streamed Invoke, Health (grpc.aio)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from typing import Any

import grpc

from ppp_sdk._gen import plugin_protocol_pb2 as pb
from ppp_sdk._gen import plugin_protocol_pb2_grpc as pb_grpc
from ppp_sdk.plugin import Context, InvocationContext, Plugin, PluginError

log = logging.getLogger("ppp_sdk")

# Results larger than this go out as ResultChunk messages (gRPC's default receive limit is 4 MiB).
CHUNK_BYTES = 1024 * 1024
_LOG_LEVELS = {"debug": pb.Log.DEBUG, "info": pb.Log.INFO, "warning": pb.Log.WARNING, "error": pb.Log.ERROR}
_DONE = object()
_UNBOUND = "this worker is a stem cell not yet bound to a plugin"


def _context(message: pb.Context) -> Context:
    return Context(
        message.tenant_id,
        message.user_id,
        message.session_id,
        message.request_id,
        message.traceparent,
        message.tracestate,
    )


class PluginServicer(pb_grpc.PluginWorkerServicer):
    """PPP on grpc.aio: one event loop serves every call; the plugin's handler runs in a bounded
    thread pool (so that a handler that blocks cannot stall the others, and its progress reaches
    the caller while it works) — or on the loop itself for handlers that declare they never block
    (``Plugin(inline=True)``: pure computation, no thread hop at all) and for ``async def`` handlers."""

    def __init__(self, plugin: Plugin | None, *, max_concurrency: int = 4) -> None:
        """``plugin`` None: a stem cell's servicer, which serves nothing until ``bind``."""
        self._init = pb.InitResponse(ok=False, message=_UNBOUND)
        self._health = pb.HealthResponse(status=pb.HealthResponse.NOT_SERVING)
        self.handlers: futures.ThreadPoolExecutor | None = None
        if plugin is not None:
            self.bind(plugin, max_concurrency=max_concurrency)

    def bind(self, plugin: Plugin, *, max_concurrency: int) -> None:
        """Host ``plugin`` from now on (a stem cell's servicer, once)."""
        self.plugin = plugin
        # A pool, not a thread per call: cheaper, and bounded under an address-space limit.
        self.handlers = futures.ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="handler")
        self._init = pb.InitResponse(
            ok=True, message=plugin.ready_message or f"{plugin.primitive} ready", primitives=[plugin.primitive]
        )
        self._health = pb.HealthResponse(status=pb.HealthResponse.SERVING, primitives=[plugin.primitive])

    async def Init(self, request: pb.InitRequest, context: grpc.aio.ServicerContext) -> pb.InitResponse:
        return self._init

    async def Health(self, request: pb.HealthRequest, context: grpc.aio.ServicerContext) -> pb.HealthResponse:
        return self._health

    async def Invoke(
        self, request: pb.InvokeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.PluginMessage]:
        if self.handlers is None:
            yield _failed("internal", _UNBOUND)
            return
        if request.primitive != self.plugin.primitive:
            yield _failed(
                "unknown_primitive", f"this worker hosts {self.plugin.primitive!r}, not {request.primitive!r}"
            )
            return
        if self.plugin.inline or self.plugin.is_async:
            messages: list[pb.PluginMessage] = []
            for message in await self._run_here(request, messages.append):
                messages.append(message)
            for message in messages:
                yield message
            return
        # In a thread of the pool; what it emits comes back to the loop as it happens.
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        cancelled = threading.Event()

        def emit(message: pb.PluginMessage) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, message)

        def work() -> None:
            outcome: list[pb.PluginMessage] = []
            try:
                outcome = self._run(request, emit, cancelled)
            except BaseException as exc:  # sys.exit() in the handler, or a failure while reporting one
                outcome = [_failed("internal", f"the handler ended without a result: {type(exc).__name__}")]
            finally:
                # Whatever happened, the stream ends: the caller must never wait for nothing.
                loop.call_soon_threadsafe(_finish, queue, outcome)

        self.handlers.submit(work)  # type: ignore[union-attr]
        try:
            while (message := await queue.get()) is not _DONE:
                yield message
        except asyncio.CancelledError:
            # The caller cancelled the Invoke stream: the handler learns it (ctx.cancelled, or
            # Cancelled at its next progress report) and stops; its thread is free again.
            cancelled.set()
            log.info("invocation %s cancelled by the caller", request.request_id)
            raise

    async def _run_here(self, request: pb.InvokeRequest, emit: Callable[[pb.PluginMessage], None]) -> list[Any]:
        """Run the handler on the loop (``inline`` or ``async def``)."""
        ctx = InvocationContext(_context(request.context), _emitter(emit))
        try:
            if self.plugin.is_async:
                output = await self.plugin.run_async(request.arguments, ctx)
            else:
                output = self.plugin.run(request.arguments, ctx)
            return list(_completed(output))
        except Exception as exc:
            return _failure(exc, self.plugin)

    def _run(
        self,
        request: pb.InvokeRequest,
        emit: Callable[[pb.PluginMessage], None],
        cancelled: threading.Event | None = None,
    ) -> list[pb.PluginMessage]:
        """The messages that end one invocation: its result, or why there is none."""
        ctx = InvocationContext(_context(request.context), _emitter(emit), cancelled)
        try:
            return list(_completed(self.plugin.run(request.arguments, ctx)))
        except Exception as exc:
            return _failure(exc, self.plugin)


def _finish(queue: asyncio.Queue[Any], outcome: list[pb.PluginMessage]) -> None:
    for message in outcome:
        queue.put_nowait(message)
    queue.put_nowait(_DONE)


def _emitter(emit: Callable[[pb.PluginMessage], None]) -> Callable[[str, Any], None]:
    """What ``InvocationContext`` calls for progress and log lines: PPP messages for ``emit``."""

    def to_message(kind: str, payload: Any) -> None:
        if kind == "progress":
            percent, text = payload
            emit(pb.PluginMessage(progress=pb.Progress(percent=percent, message=text)))
        else:
            level, text = payload
            emit(pb.PluginMessage(log=pb.Log(level=_LOG_LEVELS.get(level, pb.Log.INFO), message=text)))

    return to_message


def _failure(exc: Exception, plugin: Plugin) -> list[pb.PluginMessage]:
    """A handler's exception as the message that ends its invocation."""
    if isinstance(exc, PluginError):
        return [_failed(exc.code, exc.message)]
    if isinstance(exc, MemoryError):
        # Out of address space (the supervisor's RLIMIT_AS). What the handler allocated is freed
        # as the caller's frame lets go of the exception; say so without allocating much.
        return [_failed("out_of_memory", _out_of_memory_message())]
    log.exception("plugin %s raised", plugin.primitive)  # a bug in the plugin: report it, keep the worker up
    return [_failed("internal", f"{type(exc).__name__}: {exc}")]


def _out_of_memory_message() -> str:
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return "the plugin ran out of memory (MemoryError)"
    return f"the plugin ran out of memory (MemoryError at its address-space limit of {limit // (1024 * 1024)} MB)"


def _lower_own_limits(limits: dict[str, int]) -> None:
    """The plugin's rlimits, set by the stem cell on itself before it loads the plugin: its
    address space, and CPU seconds counted from now (its own start-up is not the plugin's)."""
    if address_space := int(limits.get("address_space") or 0):
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    if cpu_seconds := int(limits.get("cpu_seconds") or 0):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cap = int(usage.ru_utime + usage.ru_stime) + 1 + cpu_seconds
        resource.setrlimit(resource.RLIMIT_CPU, (cap, cap + 1))  # SIGXCPU at the soft limit


async def _await_binding(
    path: str, servicer: PluginServicer, load: Callable[[str], Plugin], stop: asyncio.Event
) -> asyncio.Server:
    """Listen on the stem cell's control socket; the first binding loads the plugin (a bad one
    is answered ``error ...`` and ends the worker with status 2)."""

    async def bind(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        try:
            request = json.loads(await reader.readline())
            _lower_own_limits(request.get("limits") or {})
            plugin = load(str(request["entrypoint"]))
            servicer.bind(plugin, max_concurrency=max(1, int(request.get("concurrency", 1))))
            answer, failed = b"ok\n", False
        except (Exception, SystemExit) as exc:
            answer, failed = f"error {exc}".replace("\n", " ").encode() + b"\n", True
        writer.write(answer)
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()
        if failed:
            os._exit(2)

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return await asyncio.start_unix_server(bind, path=path)


def _failed(code: str, message: str) -> pb.PluginMessage:
    return pb.PluginMessage(failed=pb.Failed(code=code, message=message))


def _completed(output: bytes) -> Iterator[pb.PluginMessage]:
    """The result: one Completed, or ResultChunk messages then an empty Completed when it is large."""
    if len(output) <= CHUNK_BYTES:
        yield pb.PluginMessage(completed=pb.Completed(output=output))
        return
    for index, start in enumerate(range(0, len(output), CHUNK_BYTES)):
        yield pb.PluginMessage(result_chunk=pb.ResultChunk(data=output[start : start + CHUNK_BYTES], index=index))
    yield pb.PluginMessage(completed=pb.Completed())


def _die_with_parent() -> None:
    """Exit when the supervisor that started us dies, so no orphan worker survives it."""
    expected = os.environ.get("PPP_PARENT_PID")
    if not expected:
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: fall back to the check below only
        pass
    if os.getppid() != int(expected):  # the parent died before prctl took effect
        os._exit(1)


def serve(
    plugin: Plugin | None,
    *,
    unix: str | None = None,
    listen: str | None = None,
    max_workers: int = 4,
    stem: str | None = None,
    load: Callable[[str], Plugin] | None = None,
) -> None:
    """Serve ``plugin`` over PPP until SIGTERM or SIGINT; exactly one of ``unix``/``listen``.

    ``stem`` (with ``plugin`` None and ``load``): a stem cell, which serves PPP at once with no
    plugin and waits on the Unix socket ``stem`` for the supervisor's binding (one JSON line,
    ``{"entrypoint": ..., "concurrency": N}``), then loads the plugin with ``load``."""
    if bool(unix) == bool(listen):
        raise ValueError("give exactly one of unix= (socket path) or listen= (host:port)")
    _die_with_parent()
    # Small thread stacks: a worker under an address-space rlimit can then run many calls at once.
    threading.stack_size(512 * 1024)
    if unix and os.path.exists(unix):
        os.unlink(unix)
    target = f"unix:{unix}" if unix else str(listen)
    asyncio.run(_serve(plugin, target=target, unix=unix, max_workers=max_workers, stem=stem, load=load))


async def _serve(
    plugin: Plugin | None,
    *,
    target: str,
    unix: str | None,
    max_workers: int,
    stem: str | None = None,
    load: Callable[[str], Plugin] | None = None,
) -> None:
    server = grpc.aio.server(options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
    servicer = PluginServicer(plugin, max_concurrency=max_workers)
    pb_grpc.add_PluginWorkerServicer_to_server(servicer, server)
    if server.add_insecure_port(target) == 0 and not unix:
        raise SystemExit(f"cannot listen on {target}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    control = None
    if stem is not None:
        assert load is not None
        control = await _await_binding(stem, servicer, load, stop)
    await stop.wait()
    if control is not None:
        control.close()
    # Calls in flight get a moment to end; the handlers' pool does not keep the process up.
    await server.stop(grace=1.0)
    if servicer.handlers is not None:
        servicer.handlers.shutdown(wait=False, cancel_futures=True)
    if unix:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(unix)
