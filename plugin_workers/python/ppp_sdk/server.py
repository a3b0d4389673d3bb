"""PPP gRPC server hosting one plugin: Init, streamed Invoke, Health."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import resource
import signal
import threading
from collections.abc import Iterator
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
    def __init__(self, plugin: Plugin, *, max_concurrency: int = 4) -> None:
        self.plugin = plugin
        # Handlers run here (not on gRPC's threads) so progress streams while they work;
        # a pool, not a thread per call: cheaper, and bounded under an address-space limit.
        self.handlers = futures.ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="handler")

    def Init(self, request: pb.InitRequest, context: grpc.ServicerContext) -> pb.InitResponse:
        message = self.plugin.ready_message or f"{self.plugin.primitive} ready"
        return pb.InitResponse(ok=True, message=message, primitives=[self.plugin.primitive])

    def Health(self, request: pb.HealthRequest, context: grpc.ServicerContext) -> pb.HealthResponse:
        return pb.HealthResponse(status=pb.HealthResponse.SERVING, primitives=[self.plugin.primitive])

    def Invoke(self, request: pb.InvokeRequest, context: grpc.ServicerContext) -> Iterator[pb.PluginMessage]:
        if request.primitive != self.plugin.primitive:
            yield _failed(
                "unknown_primitive", f"this worker hosts {self.plugin.primitive!r}, not {request.primitive!r}"
            )
            return
        # The handler runs in its own thread so that progress reaches the caller while it works.
        messages: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def emit(kind: str, payload: Any) -> None:
            if kind == "progress":
                percent, text = payload
                messages.put(pb.PluginMessage(progress=pb.Progress(percent=percent, message=text)))
            else:
                level, text = payload
                messages.put(pb.PluginMessage(log=pb.Log(level=_LOG_LEVELS.get(level, pb.Log.INFO), message=text)))

        def work() -> None:
            outcome: list[pb.PluginMessage] = []
            try:
                outcome = self._run(request, emit)
            except BaseException as exc:  # sys.exit() in the handler, or a failure while reporting one
                outcome = [_failed("internal", f"the handler ended without a result: {type(exc).__name__}")]
            finally:
                # Whatever happened, the stream ends: the caller must never wait for nothing.
                for message in outcome:
                    messages.put(message)
                messages.put(_DONE)

        self.handlers.submit(work)
        while (message := messages.get()) is not _DONE:
            yield message

    def _run(self, request: pb.InvokeRequest, emit: Any) -> list[pb.PluginMessage]:
        """The messages that end one invocation: its result, or why there is none."""
        ctx = InvocationContext(_context(request.context), emit)
        try:
            return list(_completed(self.plugin.run(request.arguments, ctx)))
        except PluginError as exc:
            return [_failed(exc.code, exc.message)]
        except MemoryError:
            # Out of address space (the supervisor's RLIMIT_AS). What the handler allocated is
            # freed as this frame lets go of the exception; say so without allocating much.
            pass
        except Exception as exc:  # a bug in the plugin: report it, keep the worker up
            log.exception("plugin %s raised", self.plugin.primitive)
            return [_failed("internal", f"{type(exc).__name__}: {exc}")]
        return [_failed("out_of_memory", _out_of_memory_message())]


def _out_of_memory_message() -> str:
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return "the plugin ran out of memory (MemoryError)"
    return f"the plugin ran out of memory (MemoryError at its address-space limit of {limit // (1024 * 1024)} MB)"


def _failed(code: str, message: str) -> pb.PluginMessage:
    return pb.PluginMessage(failed=pb.Failed(code=code, message=message))


def _completed(output: bytes) -> Iterator[pb.PluginMessage]:
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


def serve(plugin: Plugin, *, unix: str | None = None, listen: str | None = None, max_workers: int = 4) -> None:
    """Serve ``plugin`` over PPP until SIGTERM or SIGINT; exactly one of ``unix``/``listen``."""
    if bool(unix) == bool(listen):
        raise ValueError("give exactly one of unix= (socket path) or listen= (host:port)")
    _die_with_parent()
    # Small thread stacks: a worker under an address-space rlimit can then run many calls at once.
    threading.stack_size(512 * 1024)
    # gRPC needs a thread per streaming call in flight, plus one for Health/Init while busy.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers + 2))
    pb_grpc.add_PluginWorkerServicer_to_server(PluginServicer(plugin, max_concurrency=max_workers), server)
    if unix:
        if os.path.exists(unix):
            os.unlink(unix)
        target = f"unix:{unix}"
    else:
        target = listen
    if server.add_insecure_port(target) == 0 and not unix:
        raise SystemExit(f"cannot listen on {target}")
    # The kernel hands SIGTERM to any thread, often one of gRPC core's; that does not wake a main
    # thread blocked in a wait (Python runs handlers only in the main thread), and the worker
    # then ignored SIGTERM until SIGKILL, now and then. The wakeup fd is written by whichever
    # thread gets the signal, so the main thread waits on it.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)

    def on_signal(signum: int, frame: object) -> None:
        """Nothing to do here: a Python handler makes the signal reach the wakeup fd."""

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.set_wakeup_fd(wake_w)
    server.start()
    while os.read(wake_r, 1)[0] not in (signal.SIGTERM, signal.SIGINT):
        pass  # another signal a plugin handles
    server.stop(grace=1.0)
    server.wait_for_termination(timeout=2.0)
    if unix:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(unix)
