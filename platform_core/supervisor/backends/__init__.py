"""Worker backends: how a supervisor starts and stops a worker (process, docker)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from platform_core.runtimes import RuntimeSpec
from platform_core.supervisor.model import ExitCause, PluginRef, State, Worker

Emit = Callable[[Worker, State, str], None]


class WorkerBackend(Protocol):
    """How a supervisor starts and stops workers: everything the supervisor calls."""

    name: str

    def prepare(self, runtime: str) -> None:
        """Called once orphans are reaped: start what makes later starts fast, in the background."""

    async def close(self) -> None:
        """Called at shutdown, after every worker is stopped."""

    async def exit_cause(self, worker: Worker, code: int) -> ExitCause | None:
        """Why ``worker`` (exited with ``code``) ended on its own, or None if it was stopped as asked."""

    async def start(self, worker: Worker, emit: Emit) -> Path:
        """Start ``worker``; emit SPAWNING and STARTING; return the path of its PPP socket.

        Sets ``worker.address`` (a gRPC target) and, where there is one, ``worker.pid``.
        Raises ``WorkerStartError`` when the worker cannot be started.
        """

    def can_start_stem_cells(self, spec: RuntimeSpec) -> bool:
        """Whether workers of ``spec`` can start here as stem cells (their program knows --stem)."""

    async def start_stem(self, worker: Worker, emit: Emit) -> Path:
        """Start ``worker`` as a stem cell (no plugin yet); the path of its control socket,
        which exists once the stem cell can be bound. Sets ``worker.address``."""

    async def bind(self, worker: Worker, plugin: PluginRef) -> None:
        """Apply ``plugin``'s limits to the stem cell ``worker``, then have it load the plugin."""

    def exit_code(self, worker: Worker) -> int | None:
        """The worker's exit code once it has exited, else None (cheap, no waiting)."""

    async def wait(self, worker: Worker) -> int:
        """Wait until the worker has exited; its exit code."""

    async def stop(self, worker: Worker, *, grace_s: float) -> int:
        """Ask the worker to stop (SIGTERM), force it after ``grace_s``, remove it; exit code."""

    async def kill(self, worker: Worker) -> int:
        """Stop the worker at once (SIGKILL / force-remove) and remove it; exit code."""

    async def reap_orphans(self) -> int:
        """Remove workers that an earlier life of this supervisor left behind; how many."""


class WorkerStartError(Exception):
    """The backend could not start a worker (bad image or entrypoint, spawn failure ...)."""
