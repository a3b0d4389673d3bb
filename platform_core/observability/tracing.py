"""OpenTelemetry traces of invocations, built from the trace every invocation records anyway.

**Active only when configured**: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, with the standard variables for the rest
(``OTEL_EXPORTER_OTLP_PROTOCOL`` ``http/protobuf`` or ``grpc``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, headers, certificates, ``OTEL_BSP_*``).
Otherwise nothing of the SDK is imported and an invocation pays one ``None`` check.

**Spans from the record, not live**: an invocation's ``Trace`` already marks every phase with
its time (lookup, validation, allocation with the supervisor's spawn and readiness events, PPP
Init, Invoke with its progress and logs, output validation, release). When the invocation has
been recorded, its events become spans with explicit start and end times: a root span for the
request, a child per phase, the other events as span events. They are built on a background
thread and handed to the SDK's ``BatchSpanProcessor``, which exports them over OTLP: the hot
path pays for one queue put, and no span object lives across an ``await``.

**Propagation** (W3C Trace Context): a caller's ``traceparent`` makes our root span its child (its
sampling decision is kept). The ids of the spans a remote party must know in advance — the PPP
Init and Invoke spans (the worker's ``Context.traceparent``), the allocation and release spans
(the supervisor's) — are drawn when the call is made (``Propagation.traceparent(event)``) and used
when the span is built. Without an exporter, a caller's traceparent is still passed on unchanged,
so a plugin's spans join the caller's trace directly.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from platform_core.invocations.vocabulary import EventKind as K
from platform_core.invocations.vocabulary import Style, TimedPhase

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanProcessor

log = logging.getLogger(__name__)

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
# W3C: a vendor may cut tracestate beyond 512 characters; we drop it whole rather than guess.
MAX_TRACESTATE = 512
# Spans of this many invocations may wait to be built; beyond, new ones are dropped (and counted).
MAX_PENDING = 4096
# The builder thread starts this long after an invocation queued its trace (and takes every trace
# queued meanwhile): never while the invocation's answer is still being written.
BUILD_DELAY_S = 0.05


def configured() -> bool:
    """True when the standard variables ask for trace export (read once per process)."""
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


@dataclass(frozen=True, slots=True)
class Remote:
    """A parsed ``traceparent``: the caller's trace, its span, its flags."""

    trace_id: int
    span_id: int
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)


def traceparent_parse(value: str) -> Remote | None:
    """The W3C ``traceparent`` header ``value``, or None when it is not a valid one (then a new
    trace starts, as the W3C recommendation says)."""
    value = value.strip().lower()
    if not 55 <= len(value) <= 512 or (match := _TRACEPARENT.match(value)) is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    return Remote(trace_id, span_id, int(flags_hex, 16))


def traceparent_format(trace_id: int, span_id: int, sampled: bool) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def _new_span_id() -> int:
    # The random module reseeds itself in a forked child: gateway processes draw different ids.
    return random.getrandbits(64) or 1


class Propagation:
    """One invocation's place in a distributed trace.

    ``exported``: this process exports the invocation's spans (an exporter is configured); then
    ``traceparent(event)`` names our span opened by ``event``. Otherwise it passes the caller's
    ``traceparent`` on unchanged (``incoming``).
    """

    __slots__ = ("exported", "ids", "incoming", "parent_span_id", "root_span_id", "sampled", "trace_id", "tracestate")

    def __init__(
        self,
        *,
        trace_id: int,
        parent_span_id: int,
        sampled: bool,
        tracestate: str = "",
        exported: bool,
        incoming: str = "",
    ) -> None:
        self.trace_id = trace_id
        self.parent_span_id = parent_span_id
        self.sampled = sampled
        self.tracestate = tracestate
        self.exported = exported
        self.incoming = incoming
        self.root_span_id = _new_span_id() if exported else 0
        # Span ids drawn in advance, by the seq of the trace event that opens the span.
        self.ids: dict[int, int] = {}

    @property
    def trace_id_hex(self) -> str:
        return f"{self.trace_id:032x}"

    def traceparent(self, event: Any = None) -> str:
        """The ``traceparent`` to send with a call made at ``event`` (a ``TraceEvent`` that opens one
        of our spans; None: the root span)."""
        if not self.exported:
            return self.incoming
        if event is None:
            span_id = self.root_span_id
        elif (span_id := self.ids.get(event.seq, 0)) == 0:
            span_id = self.ids[event.seq] = _new_span_id()
        return traceparent_format(self.trace_id, span_id, self.sampled)


def propagation_begin(traceparent: str = "", tracestate: str = "") -> Propagation | None:
    """The propagation of a new invocation (or supervisor call) whose caller sent these headers;
    None when there is nothing to trace or pass on (no exporter, no valid header)."""
    exporter = _exporter()
    remote = traceparent_parse(traceparent) if traceparent else None
    state = tracestate.strip() if remote is not None and len(tracestate) <= MAX_TRACESTATE else ""
    if exporter is None:
        if remote is None:
            return None
        incoming = traceparent_format(remote.trace_id, remote.span_id, remote.sampled)
        return Propagation(
            trace_id=remote.trace_id,
            parent_span_id=remote.span_id,
            sampled=remote.sampled,
            tracestate=state,
            exported=False,
            incoming=incoming,
        )
    trace_id = remote.trace_id if remote is not None else (random.getrandbits(128) or 1)
    return Propagation(
        trace_id=trace_id,
        parent_span_id=remote.span_id if remote is not None else 0,
        sampled=exporter.sampled(trace_id, remote),
        tracestate=state,
        exported=True,
    )


# --- spans from trace events ---------------------------------------------------------------------


class _Event(Protocol):
    seq: int
    kind: str
    offset_ms: float
    detail: str
    source: str
    target: str
    data: dict[str, Any] | None


@dataclass(frozen=True)
class SpanPhase:
    """A span of an invocation: opened by the first of ``opens`` (None: it starts at the event
    before the one that closes it), closed by the next of ``closes``."""

    name: str
    opens: frozenset[str] | None
    closes: frozenset[str]


def _kinds(*kinds: Iterable[K]) -> frozenset[str]:
    return frozenset(k.value for group in kinds for k in group)


SPAN_PHASES: tuple[SpanPhase, ...] = (
    SpanPhase("lookup", _kinds({K.LOOKUP}), _kinds({K.LOOKUP_RESULT})),
    SpanPhase("validate_input", None, _kinds({K.VALIDATE_INPUT})),
    SpanPhase("allocation", _kinds(TimedPhase.ALLOCATION.opens), _kinds(TimedPhase.ALLOCATION.closes)),
    SpanPhase("spawn", _kinds({K.WORKER_SPAWNING}), _kinds({K.WORKER_STARTING, K.WORKER_FAILED})),
    SpanPhase("readiness", _kinds({K.WORKER_STARTING}), _kinds({K.WORKER_READY, K.WORKER_FAILED})),
    SpanPhase("init", _kinds({K.INIT_REQUEST}), _kinds({K.INIT_RESPONSE})),
    SpanPhase("invoke", _kinds(TimedPhase.EXECUTION.opens), _kinds(TimedPhase.EXECUTION.closes)),
    SpanPhase("validate_output", None, _kinds({K.VALIDATE_OUTPUT})),
    SpanPhase("release", _kinds(TimedPhase.RELEASE.opens), _kinds(TimedPhase.RELEASE.closes)),
    SpanPhase("stop", _kinds({K.WORKER_STOPPING}), _kinds({K.WORKER_REMOVED, K.WORKER_FAILED})),
)
_OPENED_BY: dict[str, list[SpanPhase]] = {}
for _phase in SPAN_PHASES:
    for _kind in _phase.opens if _phase.opens is not None else _phase.closes:
        _OPENED_BY.setdefault(_kind, []).append(_phase)
_FAILURES = frozenset(k.value for k in K if k.style == Style.FAILURE)
_REQUEST = K.REQUEST.value
_VALIDATIONS = frozenset({K.VALIDATE_INPUT.value, K.VALIDATE_OUTPUT.value})


@dataclass(eq=False)
class PhaseSpan:
    """A span found in a trace: times in ms from the trace's start."""

    phase: SpanPhase
    start_ms: float
    opened_by: int  # seq of the event that opened it (0: none of its own)
    parent: PhaseSpan | None
    end_ms: float | None = None
    error: str = ""
    events: list[Any] = field(default_factory=list)


def phase_spans(events: Sequence[_Event]) -> tuple[list[PhaseSpan], list[Any]]:
    """The phase spans of a trace, in the order they open, and the events that belong to the
    root span. Every event that neither opens nor closes a span is an event of the innermost
    span open when it was recorded."""
    found: list[PhaseSpan] = []
    stack: list[PhaseSpan] = []
    loose: list[Any] = []
    previous_ms = 0.0
    for event in events:
        kind, used = event.kind, False
        for span in reversed(stack):
            if kind in span.phase.closes:
                stack.remove(span)
                _close(span, event)
                used = True
                break
        for phase in _OPENED_BY.get(kind, ()):
            if phase.opens is None:  # ends here, began with the event before
                span = PhaseSpan(phase, previous_ms, 0, stack[-1] if stack else None)
                _close(span, event)
            elif used and kind in phase.closes:
                continue  # this event just closed a span of this phase
            else:
                span = PhaseSpan(phase, event.offset_ms, event.seq, stack[-1] if stack else None)
                if kind in phase.closes:  # an instant (a kept seat given back)
                    _close(span, event)
                else:
                    stack.append(span)
            found.append(span)
            used = True
        if not used:
            (stack[-1].events if stack else loose).append(event)
        previous_ms = event.offset_ms
    last_ms = max((event.offset_ms for event in events), default=0.0)
    for span in stack:  # never closed (the invocation ended inside it)
        span.end_ms = last_ms
    return found, loose


def _close(span: PhaseSpan, event: _Event) -> None:
    span.end_ms = max(event.offset_ms, span.start_ms)
    if event.kind in _FAILURES or (event.kind in _VALIDATIONS and event.detail.startswith("invalid")):
        span.error = event.detail or event.kind


# --- export --------------------------------------------------------------------------------------


@dataclass
class SpanJob:
    """What is needed to build the spans of one finished trace (taken on the hot path, cheaply)."""

    propagation: Propagation
    name: str
    server: bool
    started_ns: int
    events: Sequence[Any]
    attributes: dict[str, Any]
    # The root span's error (a failure of the service, e.g. HTTP 5xx), or "".
    error: str = ""
    # When the root span ended (Unix ns); 0: at the trace's last event.
    ended_ns: int = 0


class _Exporter:
    """The SDK's pipeline: resource, sampler, batch processor, OTLP exporter; plus a builder thread."""

    def __init__(self, *, role: str, processor: SpanProcessor | None = None) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import ParentBased
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        defaults: dict[str, str] = {}
        if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in os.environ.get(
            "OTEL_RESOURCE_ATTRIBUTES", ""
        ):
            defaults["service.name"] = f"plugin-platform-{role}"
        self.resource = _resource_hashed_once(Resource.create(defaults))
        self.scope = InstrumentationScope("platform_core.observability.tracing")
        # Reads OTEL_TRACES_SAMPLER(_ARG); parent-based always-on by default.
        self.provider = TracerProvider(resource=self.resource)
        self._parent_based = isinstance(self.provider.sampler, ParentBased)
        self.processor = processor if processor is not None else _batch_processor()
        self.provider.add_span_processor(self.processor)
        self.dropped = 0
        self._pending: queue.SimpleQueue[SpanJob | Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._build_forever, name="otel-span-builder", daemon=True)
        self._thread.start()
        atexit.register(self.shutdown)

    def sampled(self, trace_id: int, remote: Remote | None) -> bool:
        if remote is not None and self._parent_based:
            # What every parent-based sampler the variables can name decides for a remote parent
            # (its flag), without building an SDK context per invocation.
            return remote.sampled
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        parent = None
        if remote is not None:
            remote_context = SpanContext(remote.trace_id, remote.span_id, True, TraceFlags(remote.flags & 1))
            parent = trace.set_span_in_context(NonRecordingSpan(remote_context))
        decision = self.provider.sampler.should_sample(parent, trace_id, "invocation")
        return decision.decision.is_sampled()

    def submit(self, job: SpanJob) -> None:
        if self._pending.qsize() >= MAX_PENDING:
            self.dropped += 1
            return
        self._pending.put(job)

    def _build_forever(self) -> None:
        while True:
            jobs = [self._pending.get()]
            # Not at once: the invocation that queued this is still sending its answer, and this
            # thread would take the GIL from it (for up to the interpreter's 5 ms switch interval).
            time.sleep(BUILD_DELAY_S)
            while not self._pending.empty():
                jobs.append(self._pending.get_nowait())
            for job in jobs:
                if job is None:
                    return
                try:
                    if isinstance(job, SpanJob):
                        for span in build_spans(job, resource=self.resource, scope=self.scope):
                            self.processor.on_end(span)
                    else:
                        job()
                except Exception:
                    log.exception("could not build the spans of a trace")

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Build what is queued and export every finished span (tests, shutdown)."""
        done = threading.Event()
        self._pending.put(done.set)
        if not done.wait(timeout_s):
            return False
        return self.processor.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        if self._thread.is_alive():
            self.flush(5.0)
            self._pending.put(None)
            self._thread.join(1.0)
        self.provider.shutdown()


def _resource_hashed_once(resource: Any) -> Any:
    """``resource``, hashed once: the OTLP encoder groups spans by resource, and the SDK's
    ``Resource.__hash__`` serializes every attribute to JSON each time (~25 µs a span, measured)."""
    from opentelemetry.sdk.resources import Resource

    class HashedOnce(Resource):
        def __init__(self, attributes: Any, schema_url: str | None = None) -> None:
            super().__init__(attributes, schema_url)
            self._hash = super().__hash__()

        def __hash__(self) -> int:
            return self._hash

    return HashedOnce(resource.attributes, resource.schema_url)


def _batch_processor() -> SpanProcessor:
    """A BatchSpanProcessor (OTEL_BSP_* settings) over the OTLP exporter of the configured protocol."""
    from django.core.exceptions import ImproperlyConfigured
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    env = os.environ
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "").strip()
    # The specification's default; the exporters read the endpoint, headers, TLS and timeout variables.
    protocol = protocol or "http/protobuf"
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return BatchSpanProcessor(GrpcExporter())
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return BatchSpanProcessor(HttpExporter())
    raise ImproperlyConfigured(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use grpc or http/protobuf")


def build_spans(job: SpanJob, *, resource: Any, scope: Any) -> list[ReadableSpan]:
    """The SDK spans of one finished trace: the root, one per phase, events inside them."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

    propagation = job.propagation
    flags = TraceFlags(TraceFlags.SAMPLED)
    state = TraceState.from_header([propagation.tracestate]) if propagation.tracestate else TraceState()
    trace_id, started_ns = propagation.trace_id, job.started_ns

    def context(span_id: int) -> SpanContext:
        return SpanContext(trace_id, span_id, False, flags, state)

    def at(offset_ms: float) -> int:
        return started_ns + int(offset_ms * 1_000_000)

    def span_events(events: Iterable[Any]) -> list[Event]:
        out = []
        for event in events:
            # The request's line ends with the start of its body (the arguments): only its method and path go out.
            detail = " ".join(event.detail.split(" ", 2)[:2]) if event.kind == _REQUEST else event.detail
            # Only the detail: who sends it to whom is the kind's (the trace vocabulary), and every
            # attribute costs the OTLP encoder ~15 µs of the gateway's CPU.
            attributes: dict[str, Any] = {"detail": detail}
            if event.data:
                attributes.update({k: v for k, v in event.data.items() if isinstance(v, str | int | float | bool)})
            out.append(Event(event.kind, attributes, at(event.offset_ms)))
        return out

    spans, loose = phase_spans(job.events)
    root = context(propagation.root_span_id)
    remote_parent = (
        SpanContext(trace_id, propagation.parent_span_id, True, flags, state) if propagation.parent_span_id else None
    )
    ids = dict(propagation.ids)
    contexts: dict[int, SpanContext] = {}
    built: list[ReadableSpan] = []
    for span in spans:
        span_context = contexts[id(span)] = context(ids.pop(span.opened_by, 0) or _new_span_id())
        parent = contexts[id(span.parent)] if span.parent is not None else root
        built.append(
            ReadableSpan(
                span.phase.name,
                context=span_context,
                parent=parent,
                resource=resource,
                events=span_events(span.events),
                kind=SpanKind.INTERNAL,
                instrumentation_scope=scope,
                status=Status(StatusCode.ERROR, span.error[:500]) if span.error else Status(StatusCode.UNSET),
                start_time=at(span.start_ms),
                end_time=at(span.end_ms if span.end_ms is not None else span.start_ms),
            )
        )
    last_ms = max((event.offset_ms for event in job.events), default=0.0)
    built.insert(
        0,
        ReadableSpan(
            job.name,
            context=root,
            parent=remote_parent,
            resource=resource,
            attributes={k: v for k, v in job.attributes.items() if v is not None and v != ""},
            events=span_events(loose),
            kind=SpanKind.SERVER if job.server else SpanKind.INTERNAL,
            instrumentation_scope=scope,
            status=Status(StatusCode.ERROR, job.error[:500]) if job.error else Status(StatusCode.UNSET),
            start_time=started_ns,
            end_time=max(job.ended_ns or at(last_ms), started_ns),
        ),
    )
    return built


_state: dict[str, Any] = {"exporter": None, "checked": False, "role": "gateway"}


def _exporter() -> _Exporter | None:
    if not _state["checked"]:
        _state["checked"] = True
        if configured():
            _state["exporter"] = _Exporter(role=_state["role"])
    return _state["exporter"]


def tracing_setup(*, role: str, processor: SpanProcessor | None = None) -> None:
    """Name this process's role (``gateway``, ``supervisor``: the default ``service.name`` is
    ``plugin-platform-<role>``); ``processor``: export through it instead of OTLP (tests), even
    without the variables."""
    current = _state["exporter"]
    if current is not None:
        current.shutdown()
    _state.update(role=role, exporter=None, checked=processor is not None)
    if processor is not None:
        _state["exporter"] = _Exporter(role=role, processor=processor)


def spans_submit(job: SpanJob) -> None:
    """Queue the spans of a finished trace for building and export (when sampled)."""
    exporter = _state["exporter"]
    if exporter is not None and job.propagation.exported and job.propagation.sampled:
        exporter.submit(job)


def spans_flush(timeout_s: float = 10.0) -> bool:
    """Build and export everything queued so far (tests, benchmarks); True when done in time."""
    exporter = _state["exporter"]
    return True if exporter is None else exporter.flush(timeout_s)
