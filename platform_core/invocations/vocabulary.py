"""The trace's vocabulary, declared once: phases, participants, event kinds and timed spans.

Every arrow of an invocation's sequence diagram is an event of one ``EventKind``; each kind
knows who sends it to whom, in which of the seed's numbered phases it usually falls, and how
it is drawn (a call, a reply, a failure, a note). Phase timings (``timings.py``), the API, the
dashboard's Python and the browser (``browser_vocabulary``, rendered into every dashboard page)
all read them from here; nothing else spells a kind, a phase number or a colour.
"""

from __future__ import annotations

import enum
from typing import Any, cast

from django.db import models


class Participant(models.TextChoices):
    """The seed's lifelines, in its order."""

    CLIENT = "client", "Client"
    GATEWAY = "gateway", "Gateway"
    REGISTRY = "registry", "Registry"
    RUNTIME_CLIENT = "runtime_client", "Runtime Client"
    SUPERVISOR = "supervisor", "Supervisor"
    BACKEND = "backend", "Backend"
    WORKER = "worker", "Worker"


class Phase(enum.IntEnum):
    """The seed's numbered phases (its ``rect`` boxes), with their titles and colours."""

    title: str
    rgb: tuple[int, int, int]
    # The lifelines its note spans.
    span: tuple[Participant, Participant]

    # ``*spec`` (title, rgb, span), not named parameters: a type checker reads ``Phase(3)``, a
    # lookup by number, as a call of this method.
    def __new__(cls, number: int, *spec: Any) -> Phase:
        member = int.__new__(cls, number)
        member._value_ = number
        member.title, member.rgb, member.span = spec
        return member

    REQUEST = 1, "Client request", (55, 113, 238), (Participant.CLIENT, Participant.GATEWAY)
    LOOKUP = 2, "Plugin lookup", (75, 133, 248), (Participant.GATEWAY, Participant.REGISTRY)
    ALLOCATION = 3, "Worker allocation", (45, 93, 218), (Participant.GATEWAY, Participant.SUPERVISOR)
    SESSION = 4, "gRPC PPP session", (100, 113, 238), (Participant.GATEWAY, Participant.WORKER)
    EXECUTION = 5, "Plugin execution", (55, 180, 238), (Participant.GATEWAY, Participant.WORKER)
    CLEANUP = 6, "Cleanup & teardown", (55, 150, 200), (Participant.GATEWAY, Participant.WORKER)
    RESPONSE = 7, "Client response", (65, 105, 225), (Participant.CLIENT, Participant.GATEWAY)


class Style(enum.StrEnum):
    """How an arrow is drawn."""

    CALL = "call"  # solid arrow
    REPLY = "reply"  # dashed arrow back
    FAILURE = "failure"  # an arrow that ends in a cross
    NOTE = "note"  # something a lifeline does by itself


_C, _GW, _REG, _RC, _SUP, _BE, _W = (
    Participant.CLIENT,
    Participant.GATEWAY,
    Participant.REGISTRY,
    Participant.RUNTIME_CLIENT,
    Participant.SUPERVISOR,
    Participant.BACKEND,
    Participant.WORKER,
)


class EventKind(enum.StrEnum):
    """Every kind of trace event: (name, source, target, usual phase, style)."""

    source: Participant
    target: Participant
    phase: Phase
    style: Style

    # ``*spec`` (source, target, phase, style): see ``Phase.__new__``.
    def __new__(cls, value: str, *spec: Any) -> EventKind:
        member = str.__new__(cls, value)
        member._value_ = value
        member.source, member.target, member.phase, member.style = spec
        return member

    # 1. request
    REQUEST = "request", _C, _GW, Phase.REQUEST, Style.CALL
    REFUSED = "refused", _GW, _C, Phase.REQUEST, Style.FAILURE
    # 2. lookup and input validation
    LOOKUP = "lookup", _GW, _REG, Phase.LOOKUP, Style.CALL
    LOOKUP_RESULT = "lookup_result", _REG, _GW, Phase.LOOKUP, Style.REPLY
    VALIDATE_INPUT = "validate_input", _GW, _GW, Phase.LOOKUP, Style.NOTE
    # 3. allocation
    ALLOCATE_REQUEST = "allocate_request", _GW, _RC, Phase.ALLOCATION, Style.CALL
    ALLOCATE_RPC = "allocate_rpc", _RC, _SUP, Phase.ALLOCATION, Style.CALL
    ALLOCATION_RETRY = "allocation_retry", _SUP, _RC, Phase.ALLOCATION, Style.FAILURE
    ALLOCATION_FAILED = "allocation_failed", _SUP, _RC, Phase.ALLOCATION, Style.FAILURE
    ALLOCATE_RESPONSE = "allocate_response", _SUP, _RC, Phase.ALLOCATION, Style.REPLY
    WORKER_ALLOCATED = "worker_allocated", _RC, _GW, Phase.ALLOCATION, Style.REPLY
    LEASE_USED = "lease_used", _RC, _GW, Phase.ALLOCATION, Style.REPLY
    # The supervisor's lifecycle events of the worker (the seed's state diagram), as they happened.
    WORKER_REQUESTED = "worker_requested", _SUP, _SUP, Phase.ALLOCATION, Style.NOTE
    WORKER_ALLOCATING = "worker_allocating", _SUP, _SUP, Phase.ALLOCATION, Style.NOTE
    WORKER_SPAWNING = "worker_spawning", _SUP, _BE, Phase.ALLOCATION, Style.CALL
    WORKER_STARTING = "worker_starting", _BE, _W, Phase.ALLOCATION, Style.CALL
    WORKER_READY = "worker_ready", _W, _SUP, Phase.ALLOCATION, Style.REPLY
    WORKER_EXECUTING = "worker_executing", _SUP, _SUP, Phase.ALLOCATION, Style.NOTE
    WORKER_IDLE = "worker_idle", _SUP, _SUP, Phase.CLEANUP, Style.NOTE
    WORKER_COMPLETED = "worker_completed", _SUP, _SUP, Phase.CLEANUP, Style.NOTE
    WORKER_RELEASING = "worker_releasing", _SUP, _SUP, Phase.CLEANUP, Style.NOTE
    WORKER_STOPPING = "worker_stopping", _SUP, _BE, Phase.CLEANUP, Style.CALL
    WORKER_SIGNAL = "worker_signal", _BE, _W, Phase.CLEANUP, Style.CALL
    WORKER_REMOVED = "worker_removed", _BE, _SUP, Phase.CLEANUP, Style.REPLY
    WORKER_FAILED = "worker_failed", _SUP, _SUP, Phase.CLEANUP, Style.FAILURE
    # 4. PPP session
    CHANNEL_OPEN = "channel_open", _GW, _GW, Phase.SESSION, Style.NOTE
    CONNECT_RETRY = "connect_retry", _GW, _W, Phase.SESSION, Style.FAILURE
    INIT_REQUEST = "init_request", _GW, _W, Phase.SESSION, Style.CALL
    INIT_RESPONSE = "init_response", _W, _GW, Phase.SESSION, Style.REPLY
    INIT_CACHED = "init_cached", _GW, _GW, Phase.SESSION, Style.NOTE
    # 5. execution
    INVOKE_REQUEST = "invoke_request", _GW, _W, Phase.EXECUTION, Style.CALL
    LOG = "log", _W, _W, Phase.EXECUTION, Style.NOTE
    PROGRESS = "progress", _W, _GW, Phase.EXECUTION, Style.REPLY
    COMPLETED = "completed", _W, _GW, Phase.EXECUTION, Style.REPLY
    FAILED = "failed", _W, _GW, Phase.EXECUTION, Style.FAILURE
    WORKER_LOST = "worker_lost", _W, _GW, Phase.EXECUTION, Style.FAILURE
    TIMEOUT = "timeout", _GW, _GW, Phase.EXECUTION, Style.FAILURE
    VALIDATE_OUTPUT = "validate_output", _GW, _GW, Phase.EXECUTION, Style.NOTE
    # 6. cleanup
    CHANNEL_CLOSE = "channel_close", _GW, _W, Phase.CLEANUP, Style.CALL
    RELEASE_REQUEST = "release_request", _GW, _RC, Phase.CLEANUP, Style.CALL
    RELEASE_RPC = "release_rpc", _RC, _SUP, Phase.CLEANUP, Style.CALL
    RELEASE_RESPONSE = "release_response", _SUP, _RC, Phase.CLEANUP, Style.REPLY
    RELEASED = "released", _RC, _GW, Phase.CLEANUP, Style.REPLY
    CANCEL_REQUEST = "cancel_request", _GW, _RC, Phase.CLEANUP, Style.CALL
    CANCEL_RPC = "cancel_rpc", _RC, _SUP, Phase.CLEANUP, Style.CALL
    CANCEL_RESPONSE = "cancel_response", _SUP, _RC, Phase.CLEANUP, Style.REPLY
    CANCELLED = "cancelled", _RC, _GW, Phase.CLEANUP, Style.REPLY
    RELEASE_FAILED = "release_failed", _SUP, _RC, Phase.CLEANUP, Style.FAILURE
    LEASE_RETURNED = "lease_returned", _GW, _RC, Phase.CLEANUP, Style.NOTE
    # 7. response
    RESPONSE = "response", _GW, _C, Phase.RESPONSE, Style.REPLY
    INTERRUPTED = "interrupted", _GW, _C, Phase.RESPONSE, Style.FAILURE
    # Async invocations (queued, then run) and cancellation on request.
    QUEUED = "queued", _GW, _GW, Phase.REQUEST, Style.NOTE
    INVOCATION_CANCELLED = "invocation_cancelled", _GW, _C, Phase.RESPONSE, Style.FAILURE

    @classmethod
    def lifecycle(cls, state_name: str) -> EventKind:
        """The kind of a supervisor lifecycle event, from its state's name (``READY`` → worker_ready)."""
        return cls(f"worker_{state_name.lower()}")


class TimedPhase(enum.StrEnum):
    """The phase timings every invocation reports (``timings_ms``), each a span between events.

    ``opens``: the first of these kinds starts it; ``closes``: the last of these ends it.
    """

    opens: frozenset[EventKind]
    closes: frozenset[EventKind]

    def __new__(cls, value: str, opens: set[EventKind], closes: set[EventKind]):
        member = str.__new__(cls, value)
        member._value_ = value
        member.opens, member.closes = frozenset(opens), frozenset(closes)
        return member

    ALLOCATION = (
        "allocation",
        {EventKind.ALLOCATE_REQUEST},
        {EventKind.WORKER_ALLOCATED, EventKind.LEASE_USED, EventKind.ALLOCATION_FAILED},
    )
    INIT = "init", {EventKind.INIT_REQUEST, EventKind.INIT_CACHED}, {EventKind.INIT_RESPONSE, EventKind.INIT_CACHED}
    EXECUTION = (
        "execution",
        {EventKind.INVOKE_REQUEST},
        {EventKind.COMPLETED, EventKind.FAILED, EventKind.WORKER_LOST, EventKind.TIMEOUT},
    )
    RELEASE = (
        "release",
        {EventKind.RELEASE_REQUEST, EventKind.CANCEL_REQUEST, EventKind.LEASE_RETURNED},
        {EventKind.RELEASED, EventKind.CANCELLED, EventKind.RELEASE_FAILED, EventKind.LEASE_RETURNED},
    )
    TOTAL = "total", {EventKind.REQUEST}, {EventKind.RESPONSE, EventKind.REFUSED, EventKind.INVOCATION_CANCELLED}


# The parts of ``total`` the timing bar stacks (the rest is the gateway's own work).
TIMING_PARTS = (TimedPhase.ALLOCATION, TimedPhase.INIT, TimedPhase.EXECUTION, TimedPhase.RELEASE)

# Detail on demand: the supervisor's account of the worker's lifecycle (the seed's state
# diagram, step by step). The dashboard folds a run of them into one line of their phase; a
# failure is never folded.
LIFECYCLE_DETAIL = frozenset(
    {
        EventKind.WORKER_REQUESTED,
        EventKind.WORKER_ALLOCATING,
        EventKind.WORKER_SPAWNING,
        EventKind.WORKER_STARTING,
        EventKind.WORKER_READY,
        EventKind.WORKER_EXECUTING,
        EventKind.WORKER_IDLE,
        EventKind.WORKER_COMPLETED,
        EventKind.WORKER_RELEASING,
        EventKind.WORKER_STOPPING,
        EventKind.WORKER_SIGNAL,
        EventKind.WORKER_REMOVED,
    }
)


class Span(enum.StrEnum):
    """The waterfall's timed spans inside the seed's phases: each from the first event of one of
    its ``opens`` kinds to the next event of one of its ``closes`` kinds.

    ``parent``: the span it happens inside (None: directly in its phase). A span with ``steps``
    is repeated: each of its ``closes`` events ends one step, begun at the span's opening or at
    the previous step's end (one bar per progress message).
    """

    label: str
    phase: Phase
    parent: Span | None
    opens: frozenset[EventKind]
    closes: frozenset[EventKind]
    steps: bool

    def __new__(
        cls,
        value: str,
        label: str,
        phase: Phase,
        parent: str | None,
        opens: set[EventKind],
        closes: set[EventKind],
        steps: bool = False,
    ):
        member = str.__new__(cls, value)
        member._value_ = value
        member.label, member.phase, member.opens, member.closes, member.steps = (
            label,
            phase,
            frozenset(opens),
            frozenset(closes),
            steps,
        )
        member.parent = cast("Span", cls._value2member_map_[parent]) if parent else None  # declared above it
        return member

    LOOKUP = "lookup", "Registry lookup", Phase.LOOKUP, None, {EventKind.LOOKUP}, {EventKind.LOOKUP_RESULT}
    ALLOCATE = (
        "allocate",
        "AllocateWorker",
        Phase.ALLOCATION,
        None,
        {EventKind.ALLOCATE_RPC},
        {EventKind.ALLOCATE_RESPONSE, EventKind.ALLOCATION_FAILED},
    )
    SPAWN = "spawn", "Spawn", Phase.ALLOCATION, "allocate", {EventKind.WORKER_SPAWNING}, {EventKind.WORKER_STARTING}
    READINESS = (
        "readiness",
        "Readiness probe",
        Phase.ALLOCATION,
        "allocate",
        {EventKind.WORKER_STARTING},
        {EventKind.WORKER_READY, EventKind.WORKER_FAILED},
    )
    CONNECT = (
        "connect",
        "Connect",
        Phase.SESSION,
        None,
        {EventKind.CHANNEL_OPEN},
        {EventKind.INIT_REQUEST, EventKind.INIT_CACHED, EventKind.WORKER_LOST},
    )
    INIT = "init", "Init", Phase.SESSION, None, {EventKind.INIT_REQUEST}, {EventKind.INIT_RESPONSE}
    INVOKE = (
        "invoke",
        "Invoke",
        Phase.EXECUTION,
        None,
        {EventKind.INVOKE_REQUEST},
        {EventKind.COMPLETED, EventKind.FAILED, EventKind.WORKER_LOST, EventKind.TIMEOUT},
    )
    STEP = "step", "Step", Phase.EXECUTION, "invoke", {EventKind.INVOKE_REQUEST}, {EventKind.PROGRESS}, True
    RELEASE = (
        "release",
        "ReleaseWorker",
        Phase.CLEANUP,
        None,
        {EventKind.RELEASE_REQUEST, EventKind.CANCEL_REQUEST},
        {EventKind.RELEASED, EventKind.CANCELLED, EventKind.RELEASE_FAILED},
    )
    STOP = "stop", "Stop and remove", Phase.CLEANUP, "release", {EventKind.WORKER_STOPPING}, {EventKind.WORKER_REMOVED}


def browser_vocabulary() -> dict[str, Any]:
    """The vocabulary as the dashboard's JavaScript reads it (``json_script`` in every page)."""
    return {
        "participants": [{"key": p.value, "label": p.label} for p in Participant],
        "phases": {
            str(p.value): {"title": p.title, "rgb": list(p.rgb), "span": [p.span[0].value, p.span[1].value]}
            for p in Phase
        },
        "kinds": {
            k.value: {
                "source": k.source.value,
                "target": k.target.value,
                "phase": int(k.phase),
                "style": k.style.value,
                "detail": k in LIFECYCLE_DETAIL,
            }
            for k in EventKind
        },
        "timed_phases": [t.value for t in TimedPhase],
        "timing_parts": [t.value for t in TIMING_PARTS],
    }
