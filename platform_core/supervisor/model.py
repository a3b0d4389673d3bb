"""What the supervisor knows about a worker."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from platform_core.runtimes import BUILTIN_RUNTIMES, RuntimeSpec


class State(enum.IntEnum):
    """The seed's worker lifecycle states (values match runtime_supervisor.proto)."""

    REQUESTED = 1
    ALLOCATING = 2
    SPAWNING = 3
    STARTING = 4
    READY = 5
    EXECUTING = 6
    COMPLETED = 7
    RELEASING = 8
    STOPPING = 9
    REMOVED = 10
    FAILED = 11
    IDLE = 12
    # Our addition to the seed's diagram: started ahead with no plugin, waiting to be bound.
    STEM_CELL = 13


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 256 * 1024 * 1024
    cpus: float = 1.0
    pids: int = 64
    cpu_seconds: int = 0


@dataclass(frozen=True)
class PoolSpec:
    """How many warm workers to keep for a plugin, and how to use them."""

    min_idle: int = 1
    max_workers: int = 4
    max_concurrency: int = 1
    idle_timeout_s: float = 300.0
    max_uses: int = 0
    queue_timeout_s: float = 2.0


@dataclass(frozen=True)
class PluginRef:
    name: str
    runtime: str
    entrypoint: str = ""
    image: str = ""
    backend: str = ""
    limits: Limits = field(default_factory=Limits)
    # None: ephemeral, a fresh worker per allocation.
    pool: PoolSpec | None = None
    # How to start it; None (a caller from before runtimes were data): the built-in recipe.
    runtime_spec: RuntimeSpec | None = None

    @property
    def pool_key(self) -> tuple[object, ...]:
        """Workers are interchangeable only if they run the same thing the same way."""
        return (self.name, self.runtime, self.entrypoint, self.image, self.backend, self.limits, self.runtime_spec)

    @property
    def launch_spec(self) -> RuntimeSpec | None:
        """The recipe to start this plugin's workers with, if there is one."""
        return self.runtime_spec or BUILTIN_RUNTIMES.get(self.runtime)


@dataclass(frozen=True)
class ExitCause:
    """Why a worker ended on its own, before the supervisor stopped it."""

    # memory_limit, cpu_time_limit, killed (a signal nobody on the platform sent), crashed, exited
    kind: str
    # For people: "worker exceeded its memory limit (256 MB) and was killed".
    detail: str


# (gateway instance id, start of that gateway's life in Unix nanoseconds): who holds a lease.
LeaseOwner = tuple[str, int]


@dataclass
class Lease:
    """A worker (ephemeral) or one seat of a pooled worker, handed to a gateway until it gives it
    back or stops renewing it (``expires_at``, monotonic): then the supervisor takes it back."""

    lease_id: str
    worker_id: str
    owner: LeaseOwner | None
    expires_at: float
    tenant: str = ""
    # As the holder last reported: running an invocation on it now (pooled seats are kept between
    # invocations by the gateway that holds them), and invocations served since its last report.
    busy: bool = True
    # The supervisor wants it back (worker recycled, retired, shutting down): the holder returns it.
    revoked: str = ""


@dataclass(frozen=True)
class Event:
    worker_id: str
    state: State
    at_ns: int
    detail: str = ""
    plugin: str = ""
    backend: str = ""
    tenant: str = ""


class BoundedOutput:
    """The last ``limit`` bytes a worker wrote, and whether anything before them was dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._data = bytearray()
        self.truncated = False
        # Bytes fed over the whole life, so a caller can ask for what came after a mark.
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self._data += chunk
        if len(self._data) > self.limit:
            del self._data[: len(self._data) - self.limit]
            self.truncated = True

    def text(self) -> str:
        return self._data.decode("utf-8", errors="replace")

    def since(self, mark: int) -> tuple[str, bool]:
        """What was written after ``total`` was ``mark``, and whether part of it is gone."""
        wanted = self.total - mark
        kept = min(wanted, len(self._data))
        return self._data[len(self._data) - kept :].decode("utf-8", errors="replace"), kept < wanted


@dataclass
class Worker:
    worker_id: str
    plugin: PluginRef
    backend: str
    state: State = State.REQUESTED
    address: str = ""
    pid: int = 0
    started_ns: int = field(default_factory=time.time_ns)
    exit_code: int | None = None
    output: BoundedOutput = field(default_factory=lambda: BoundedOutput(64 * 1024))
    # Backend-specific state (process handle, container, socket directory ...).
    runtime_state: dict[str, Any] = field(default_factory=dict)
    # Pooled workers only.
    pooled: bool = False
    in_use: int = 0
    uses: int = 0
    idle_since: float = 0.0
    retiring: bool = False
    output_mark: int = 0
    # Who holds the worker now: one lease per allocation not yet given back.
    leases: dict[str, Lease] = field(default_factory=dict)
    # The tenant it was started for (ephemeral workers; pooled ones serve every tenant).
    tenant: str = ""
    # It exited before anyone asked it to (crash, kill at a limit): its exit code is its own.
    exited_unasked: bool = False
    # A stem cell not yet bound to a plugin (it holds no worker slot).
    stem_cell: bool = False

    @property
    def alive(self) -> bool:
        return self.state not in {State.REMOVED, State.FAILED} and self.exit_code is None
