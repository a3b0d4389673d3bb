"""The plugin declaration: a primitive name, its schemas and one handler function."""

from __future__ import annotations

import inspect
import json
import math
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


class PluginError(Exception):
    """A failure the plugin reports on purpose; becomes a PPP ``Failed{code, message}``."""

    def __init__(self, message: str, *, code: str = "plugin_error") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Cancelled(PluginError):
    """Raised in a handler by ``ctx.progress``/``ctx.raise_if_cancelled`` once the caller has
    cancelled the invocation (it cancelled its PPP ``Invoke`` stream)."""

    def __init__(self) -> None:
        super().__init__("the caller cancelled this invocation", code="cancelled")


@dataclass(frozen=True)
class Context:
    tenant_id: str = ""
    user_id: str = ""
    session_id: str = ""
    request_id: str = ""
    # W3C Trace Context of the invocation's PPP call ("" when it is not traced).
    traceparent: str = ""
    tracestate: str = ""


class InvocationContext:
    """What a handler gets besides its arguments: who calls, and how to report progress."""

    def __init__(
        self, context: Context, emit: Callable[[str, Any], None], cancelled: threading.Event | None = None
    ) -> None:
        self.context = context
        self._emit = emit
        self._cancelled = cancelled or threading.Event()

    @property
    def cancelled(self) -> bool:
        """Whether the caller has cancelled this invocation: a long handler should stop (it is
        also told at its next ``progress``, which raises ``Cancelled``)."""
        return self._cancelled.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise ``Cancelled`` when the caller has cancelled this invocation."""
        if self._cancelled.is_set():
            raise Cancelled()

    @property
    def traceparent(self) -> str:
        """The W3C ``traceparent`` of the platform's span of this call ("" when untraced): make it
        the parent of the plugin's own spans (e.g. OpenTelemetry's ``TraceContextTextMapPropagator()
        .extract({"traceparent": ctx.traceparent})``) and they join the caller's trace."""
        return self.context.traceparent

    @property
    def tracestate(self) -> str:
        return self.context.tracestate

    def progress(self, percent: float, message: str = "") -> None:
        """Report progress (0..100); the caller sees it while the handler still runs."""
        if not math.isfinite(percent):
            raise ValueError("progress percent must be a finite number")
        self.raise_if_cancelled()
        self._emit("progress", (min(max(float(percent), 0.0), 100.0), str(message)))

    def log(self, message: str, level: str = "info") -> None:
        """Send a log line to the caller; it is stored with the invocation's trace."""
        self._emit("log", (level, str(message)))


Handler = Callable[[JSON, InvocationContext], JSON | Awaitable[JSON]]


@dataclass
class Plugin:
    """One primitive: its name, JSON Schemas and the function that runs it.

    ``inline=True`` declares a handler that never blocks (pure computation taking microseconds):
    the worker runs it on its event loop, without handing it to a thread. An ``async def``
    handler always runs on the loop. Any other handler runs in the worker's thread pool, so that
    it may block (sleep, wait for I/O) without holding up the other calls.
    """

    primitive: str
    input_schema: JSON = field(default_factory=lambda: {"type": "object"})
    output_schema: JSON = field(default_factory=lambda: {"type": "object"})
    description: str = ""
    ready_message: str = ""
    inline: bool = False
    _handler: Handler | None = None

    def handler(self, function: Handler) -> Handler:
        """Decorator: register ``function(args, ctx) -> dict`` (or ``async def``) as this plugin's handler."""
        self._handler = function
        return function

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self._handler)

    def run(self, arguments: bytes, ctx: InvocationContext) -> bytes:
        """Decode the JSON arguments, call the handler, encode its result.

        Raises ``PluginError`` for input that is not a JSON object and for results that are
        not JSON-encodable; the handler's own ``PluginError`` passes through.
        """
        return self._encoded(self._handler_for()(self._decoded(arguments), ctx))

    async def run_async(self, arguments: bytes, ctx: InvocationContext) -> bytes:
        """``run`` for an ``async def`` handler."""
        return self._encoded(await self._handler_for()(self._decoded(arguments), ctx))  # type: ignore[misc]

    def _handler_for(self) -> Handler:
        if self._handler is None:
            raise PluginError(f"plugin {self.primitive!r} has no handler", code="internal")
        return self._handler

    @staticmethod
    def _decoded(arguments: bytes) -> JSON:
        try:
            args = json.loads(arguments or b"{}")
        except (UnicodeDecodeError, ValueError) as exc:
            raise PluginError(f"arguments are not valid JSON: {exc}", code="invalid_input") from exc
        except RecursionError:  # nested deeper than the interpreter's recursion limit
            raise PluginError("arguments are nested too deeply", code="invalid_input") from None
        if not isinstance(args, dict):
            raise PluginError("arguments must be a JSON object", code="invalid_input")
        return args

    @staticmethod
    def _encoded(result: Any) -> bytes:
        try:
            return json.dumps(result, allow_nan=False).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise PluginError(f"result is not JSON-encodable: {exc}", code="invalid_output") from exc


def require_number(args: JSON, name: str) -> float:
    """The argument ``name`` as a float, or a ``PluginError`` naming the field."""
    value = args.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PluginError(
            f"'{name}' must be a number, got {type(value).__name__ if name in args else 'nothing'}",
            code="invalid_input",
        )
    if not math.isfinite(value):
        raise PluginError(f"'{name}' must be a finite number", code="invalid_input")
    return float(value)
