"""The workers board's relay: every supervisor's ``WatchWorkers`` stream → channel group ``workers``.

One relay runs per gateway process (per event loop) while at least one board is open: the
first viewer's consumer starts it, the last one's stops it (``relay_join``/``relay_leave``).
For each configured supervisor it opens the stream, asks ``ListWorkers`` once for the
supervisor's id, capacity and workers, then applies each lifecycle event as it comes. A
supervisor that is down, or whose stream ends, is shown as down and retried with exponential
backoff. Changes are coalesced (at most one message per supervisor every ``FLUSH_DELAY_S``)
and each message carries the supervisor's whole board, so that duplicates (several gateway
processes with a shared channel layer) are harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import weakref
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from channels.layers import get_channel_layer
from django.conf import settings

from platform_core.gateway import runtime_client
from platform_core.gateway.supervisor_discovery import supervisors_configured
from platform_core.rpc import sup_pb2

log = logging.getLogger(__name__)

WORKERS_GROUP = "workers"
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 10.0
FLUSH_DELAY_S = 0.05
RECENT_LIMIT = 8
# The seed's lifecycle states in its diagram's order (Idle: a pooled worker between uses; Stem
# cell, our addition: an ephemeral worker started ahead, waiting to be bound to a plugin).
STATES = [
    "stem_cell",
    "requested",
    "allocating",
    "spawning",
    "starting",
    "ready",
    "idle",
    "executing",
    "completed",
    "releasing",
    "stopping",
    "removed",
    "failed",
]


def _clock(at_ns: int) -> str:
    if not at_ns:
        return ""
    return datetime.fromtimestamp(at_ns / 1e9, tz=UTC).strftime("%H:%M:%S.%f")[:-3]


def board_key(address: str) -> str:
    return "sup-" + re.sub(r"[^a-zA-Z0-9]+", "-", address).strip("-")


@dataclass
class WorkerRow:
    worker_id: str
    plugin: str
    state: str
    backend: str
    at_ns: int = 0
    detail: str = ""
    # The tenant an ephemeral worker was started for ("" for pooled workers, which serve all).
    tenant: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "plugin": self.plugin,
            "state": self.state,
            "backend": self.backend,
            "since": _clock(self.at_ns),
            "detail": self.detail,
            "tenant": self.tenant,
        }


@dataclass
class SupervisorBoard:
    """What is known of one supervisor and its workers."""

    runtime: str
    address: str
    up: bool | None = None  # None: not asked yet
    error: str = ""
    retry_in_s: float | None = None
    supervisor_id: str = ""
    max_workers: int = 0
    # The host its workers run on (ListWorkers), for people.
    host_name: str = ""
    workers: dict[str, WorkerRow] = field(default_factory=dict)
    # The stem cells it keeps ready: {"backend", "memory_mb", "count"} per kind (STEM_CELLS).
    stem_cells: list[dict[str, Any]] = field(default_factory=list)
    recent: deque[WorkerRow] = field(default_factory=lambda: deque(maxlen=RECENT_LIMIT))

    def connected(self, reply: Any) -> None:
        """A fresh ``ListWorkersResponse``: the supervisor is up; its workers replace what we had."""
        self.up, self.error, self.retry_in_s = True, "", None
        self.supervisor_id, self.max_workers = reply.supervisor_id, reply.max_workers
        self.host_name = reply.host_name
        self.stem_cells = [{"backend": k.backend, "memory_mb": k.memory_mb, "count": k.count} for k in reply.stem_cells]
        self.workers = {
            w.worker_id: WorkerRow(
                w.worker_id,
                w.plugin,
                sup_pb2.WorkerState.Name(w.state).lower(),
                w.backend,
                w.started_at_unix_nanos,
                tenant=w.tenant_id,
            )
            for w in reply.workers
        }

    def down(self, error: str, *, retry_in_s: float) -> None:
        self.up, self.error, self.retry_in_s = False, error, retry_in_s
        self.workers = {}

    def apply(
        self, *, worker_id: str, state: str, at_ns: int, detail: str, plugin: str, backend: str, tenant: str = ""
    ) -> None:
        """One lifecycle event; a removed worker moves to the recent list."""
        row = self.workers.get(worker_id) or WorkerRow(worker_id, plugin, state, backend, tenant=tenant)
        row.state, row.at_ns, row.detail = state, at_ns, detail
        row.plugin, row.backend = plugin or row.plugin, backend or row.backend
        if state == "removed":
            self.workers.pop(worker_id, None)
            self.recent.appendleft(row)
        else:
            self.workers[worker_id] = row

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": board_key(self.address),
            "runtime": self.runtime,
            "address": self.address,
            "up": self.up,
            "error": self.error,
            "retry_in_s": self.retry_in_s,
            "supervisor_id": self.supervisor_id,
            "max_workers": self.max_workers,
            "host_name": self.host_name,
            "workers": [w.as_dict() for w in sorted(self.workers.values(), key=lambda w: w.worker_id)],
            # Slots in use (stem cells hold none), and the stem cells kept and ready now.
            "slots_used": sum(1 for w in self.workers.values() if w.state != "stem_cell"),
            "stem_cells": self.stem_cells,
            "stem_cells_ready": sum(1 for w in self.workers.values() if w.state == "stem_cell"),
            "recent": [w.as_dict() for w in self.recent],
        }


def boards_configured() -> list[SupervisorBoard]:
    return [
        SupervisorBoard(runtime, address)
        for runtime, addresses in supervisors_configured().items()
        for address in addresses
    ]


def board_from_listing(entry: dict[str, Any]) -> dict[str, Any]:
    """A board from ``runtime_client.workers_list()`` (the page's first render)."""
    board = SupervisorBoard(entry["runtime"], entry["address"], up=entry["up"], error=entry.get("error", ""))
    board.supervisor_id, board.max_workers = entry.get("supervisor_id", ""), entry.get("max_workers", 0)
    board.host_name = entry.get("host_name", "")
    board.stem_cells = entry.get("stem_cells", [])
    for w in entry["workers"]:
        board.workers[w["worker_id"]] = WorkerRow(
            w["worker_id"],
            w["plugin"],
            w["state"],
            w["backend"],
            w.get("started_at_unix_nanos", 0),
            tenant=w["tenant_id"],
        )
    return board.as_dict()


def board_in_scope(board: dict[str, Any], scope: str | None) -> dict[str, Any]:
    """``board`` as a viewer confined to tenant ``scope`` may see it (None: staff, everything;
    "": a user of no tenant, nothing: not even the pooled workers, which belong to no tenant)."""
    if scope is None:
        return board
    return {
        **board,
        "workers": [w for w in board["workers"] if scope and w["tenant"] == scope],
        "recent": [w for w in board["recent"] if scope and w["tenant"] == scope],
    }


def state_counts(boards: list[dict[str, Any]]) -> dict[str, int]:
    """How many live workers are in each state, over all supervisors."""
    counts: dict[str, int] = {}
    for board in boards:
        for worker in board["workers"]:
            counts[worker["state"]] = counts.get(worker["state"], 0) + 1
    return counts


class WorkersRelay:
    def __init__(self, boards: list[SupervisorBoard], *, layer: Any) -> None:
        self.boards = {board.address: board for board in boards}
        self.layer = layer
        self.viewers = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._dirty: set[str] = set()
        self._flusher: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._watch(board)) for board in self.boards.values()]

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._flusher] if self._flusher else [])]
        self._tasks, self._flusher = [], None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def snapshot(self) -> list[dict[str, Any]]:
        return [board.as_dict() for board in self.boards.values()]

    async def _watch(self, board: SupervisorBoard) -> None:
        delay = BACKOFF_INITIAL_S
        while True:
            call = None
            try:
                # Private by name, but it is the runtime client's per-loop channel cache.
                stub = runtime_client._stub(board.address)
                # The stream first, then the list: no event can fall between the two.
                call = stub.WatchWorkers(sup_pb2.WatchWorkersRequest())
                reply = await stub.ListWorkers(
                    sup_pb2.ListWorkersRequest(), timeout=settings.PLATFORM_SUPERVISOR_CALL_TIMEOUT_S
                )
                board.connected(reply)
                self._changed(board)
                delay = BACKOFF_INITIAL_S
                async for event in call:
                    board.apply(
                        worker_id=event.worker_id,
                        state=sup_pb2.WorkerState.Name(event.state).lower(),
                        at_ns=event.at_unix_nanos,
                        detail=event.detail,
                        plugin=event.plugin,
                        backend=event.backend,
                        tenant=event.tenant_id,
                    )
                    self._changed(board)
                error = "the supervisor ended its event stream (stopping?)"
            except grpc.aio.AioRpcError as exc:
                error = f"{exc.code().name}: {exc.details()}"
            except Exception as exc:  # a bug must not end the board's updates for good
                log.exception("workers relay for %s failed", board.address)
                error = f"{type(exc).__name__}: {exc}"
            finally:
                if call is not None:
                    call.cancel()
            board.down(error, retry_in_s=delay)
            self._changed(board)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    def _changed(self, board: SupervisorBoard) -> None:
        self._dirty.add(board.address)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(FLUSH_DELAY_S)
        dirty, self._dirty = self._dirty, set()
        snapshot = self.snapshot()
        counts = state_counts(snapshot)
        for board in snapshot:
            if board["address"] in dirty:
                try:
                    await self.layer.group_send(
                        WORKERS_GROUP, {"type": "workers.board", "board": board, "states": counts}
                    )
                except Exception:  # a live view is best effort
                    log.warning("could not publish the workers board", exc_info=True)


_relays: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WorkersRelay] = weakref.WeakKeyDictionary()


async def relay_join() -> WorkersRelay:
    """One more board viewer: the running relay of this event loop (started if need be)."""
    loop = asyncio.get_running_loop()
    relay = _relays.get(loop)
    if relay is None:
        relay = _relays[loop] = WorkersRelay(boards_configured(), layer=get_channel_layer())
    relay.viewers += 1
    if not relay.running:
        relay.start()
    return relay


async def relay_leave() -> None:
    """One viewer fewer; the last one stops the relay."""
    relay = _relays.get(asyncio.get_running_loop())
    if relay is None:
        return
    relay.viewers -= 1
    if relay.viewers <= 0:
        _relays.pop(asyncio.get_running_loop(), None)
        with contextlib.suppress(Exception):
            await relay.stop()
