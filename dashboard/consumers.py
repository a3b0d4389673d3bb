"""WebSocket consumers of the dashboard: join a group, forward its messages as htmx fragments.

The logic (what to show, which fragments) is in ``live`` and ``workers_relay``; these classes
only subscribe, call it, and send what it renders.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from dashboard import selectors, workers_relay
from dashboard.live import WATERFALL_EVERY_S, Fragments, LiveFollower, RunEntry, run_entry
from platform_core.invocations.live import ALL_INVOCATIONS_GROUP, ANNOUNCE_INTERVAL_S, audience, invocation_group
from platform_core.invocations.models import FINAL_STATUSES, Invocation
from platform_core.invocations.selectors import invocation_with_trace
from platform_core.invocations.snapshots import snapshot_request
from platform_core.tenancy.services import Viewer, viewer_for


@database_sync_to_async
def _finished_invocation(invocation_id: str) -> Invocation | None:
    """The stored invocation with its trace, once it has finished (None before)."""
    invocation = invocation_with_trace(invocation_id=invocation_id)
    if invocation is None or invocation.status not in FINAL_STATUSES:
        return None
    return invocation


@database_sync_to_async
def _viewer(user) -> Viewer | None:
    return viewer_for(user)


@database_sync_to_async
def _tenant_of(invocation_id: str) -> str | None:
    return Invocation.objects.filter(id=invocation_id).values_list("tenant_id", flat=True).first()


@database_sync_to_async
def _runs(scope: str | None) -> list[RunEntry]:
    return [run_entry(i) for i in selectors.runs_in_flight(scope=scope)]


def _invocation_id(value: Any) -> str:
    """A well-formed invocation id, or "" (what a browser sends is checked, never trusted)."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return ""


# Close codes: 4401 not logged in, 4403 another tenant's invocation (or none).
NOT_LOGGED_IN, FORBIDDEN = 4401, 4403
# A live panel gets at most one message per this many seconds: what comes in between is merged
# into the next one (a fragment superseded meanwhile, such as the progress bar, is sent once).
# The first message after a quiet moment goes at once.
COALESCE_S = 0.033


class InvocationLiveConsumer(AsyncWebsocketConsumer):
    """``/ws/live/`` (the Live page: runs in flight, the newest or the picked one followed),
    ``/ws/live/<session>/`` (a dashboard tab's runs) and ``/ws/invocations/<id>/`` (one
    invocation). Anonymous connections are refused; a viewer only receives the events of
    invocations of their own tenant (staff: all)."""

    viewer: Viewer
    flusher: asyncio.Task[None] | None
    waterfall_later: asyncio.Task[None] | None

    async def connect(self) -> None:
        viewer = await _viewer(self.scope.get("user"))
        if viewer is None:
            await self.close(code=NOT_LOGGED_IN)
            return
        self.viewer = viewer
        kwargs = self.scope["url_route"]["kwargs"]
        invocation_id = str(kwargs.get("invocation_id", ""))
        session = kwargs.get("session", "")
        if invocation_id and not await self._may_see(invocation_id):
            await self.close(code=FORBIDDEN)
            return
        runs = await _runs(self.viewer.scope) if not invocation_id and not session else None
        self.follower = LiveFollower(session=session, invocation_id=invocation_id, runs=runs)
        self.outgoing, self.last_sent, self.flusher = Fragments(), 0.0, None
        self.group = invocation_group(invocation_id) if invocation_id else ALL_INVOCATIONS_GROUP
        # Subscribed first, then looked up: nothing falls between what is read and what is sent live.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await audience.joined()
        self.announcer = asyncio.ensure_future(self._announce())
        await self.accept()
        if invocation_id:
            await self._show_so_far(invocation_id)
        elif runs is not None:
            await self._send(Fragments().add("runs", self.follower.runs_html()))
            newest = next((r for r in runs if not r.finished), runs[0] if runs else None)
            if newest is not None:
                await self._follow(newest.invocation_id, picked=False)

    async def _may_see(self, invocation_id: str) -> bool:
        tenant = await _tenant_of(invocation_id)
        return tenant is not None and self.viewer.may_see(tenant)

    async def _show_so_far(self, invocation_id: str) -> None:
        """What the followed invocation did before we watched: stored whole once it has finished,
        else the running trace's events so far (sent by the gateway process that runs it)."""
        if (stored := await _finished_invocation(invocation_id)) is not None:
            await self._send(self.follower.on_stored(stored))
        else:
            await snapshot_request(self.channel_layer, invocation_id=invocation_id, reply_to=self.channel_name)

    async def _follow(self, invocation_id: str, *, picked: bool = True) -> None:
        await self._send(self.follower.pick(invocation_id) if picked else self.follower.start_with(invocation_id))
        if invocation_id:
            await self._show_so_far(invocation_id)

    async def _announce(self) -> None:
        """Live events are sent only while someone watches: say so while connected."""
        while True:
            await asyncio.sleep(ANNOUNCE_INTERVAL_S)
            await audience.announce()

    async def _send(self, fragments: Fragments) -> None:
        """Send now after a quiet moment, else with what else comes within ``COALESCE_S``."""
        self.outgoing.extend(fragments)
        if not self.outgoing or self.flusher is not None:
            return
        wait = self.last_sent + COALESCE_S - asyncio.get_running_loop().time()
        if wait <= 0:
            await self._flush()
        else:
            self.flusher = asyncio.ensure_future(self._flush_later(wait))

    async def _flush_later(self, wait: float) -> None:
        try:
            await asyncio.sleep(wait)
            await self._flush()
        finally:
            self.flusher = None

    async def _flush(self) -> None:
        text, self.outgoing = str(self.outgoing), Fragments()
        self.last_sent = asyncio.get_running_loop().time()
        if text:
            await self.send(text_data=text)

    async def disconnect(self, code: int) -> None:
        for task in (getattr(self, "flusher", None), getattr(self, "waterfall_later", None)):
            if task is not None:
                task.cancel()
        if hasattr(self, "group"):
            self.announcer.cancel()
            await audience.left()
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The Live page's picks: ``{"follow": "<invocation id>"}``, or ``""`` for the newest run."""
        if self.follower.mode != "live":
            return
        try:
            message = json.loads(text_data or "")
        except ValueError:
            return
        if not isinstance(message, dict) or "follow" not in message:
            return
        wanted = _invocation_id(message["follow"]) if message["follow"] else ""
        if message["follow"] and (not wanted or not await self._may_see(wanted)):
            return
        await self._follow(wanted)

    async def invocation_batch(self, message: dict[str, Any]) -> None:
        """Live events and state changes of one or more invocations (``invocations.live``), in
        order, or a snapshot of one's events so far (``invocations.snapshots``)."""
        fragments = Fragments()
        for batch in message["batches"]:
            if not self.viewer.may_see((batch.get("context") or {}).get("tenant_id", "")):
                continue
            update = self.follower.on_batch(batch)
            fragments.extend(update.fragments)
            if update.wants_stored and (stored := await _finished_invocation(update.wants_stored)) is not None:
                fragments.extend(self.follower.on_stored(stored))
        await self._send(fragments)
        if self.follower.pending and not getattr(self, "waterfall_later", None):
            self.waterfall_later = asyncio.ensure_future(self._send_due_later())

    async def _send_due_later(self) -> None:
        """Send what the follower held back (waterfall, runs list) once it is due."""
        try:
            while self.follower.pending:
                await asyncio.sleep(WATERFALL_EVERY_S)
                await self._send(self.follower.due())
        finally:
            self.waterfall_later = None


def board_html(board: dict[str, Any], states: dict[str, int]) -> str:
    return render_to_string("dashboard/partials/supervisor_board.html", {"board": board}) + render_to_string(
        "dashboard/partials/state_counts.html", {"states": states}
    )


class WorkersConsumer(AsyncWebsocketConsumer):
    """``/ws/workers/``: every supervisor's workers, from the relay (started by the first viewer)."""

    async def connect(self) -> None:
        viewer = await _viewer(self.scope.get("user"))
        if viewer is None:
            await self.close(code=NOT_LOGGED_IN)
            return
        self.tenant_scope = viewer.scope  # a tenant's user sees the workers started for its tenant
        await self.channel_layer.group_add(workers_relay.WORKERS_GROUP, self.channel_name)
        await self.accept()
        relay = await workers_relay.relay_join()
        self.joined = True
        snapshot = [workers_relay.board_in_scope(board, self.tenant_scope) for board in relay.snapshot()]
        counts = workers_relay.state_counts(snapshot)
        html = "".join(board_html(board, counts) for board in snapshot if board["up"] is not None)
        if html:
            await self.send(text_data=html)

    async def disconnect(self, code: int) -> None:
        if not getattr(self, "joined", False):
            return
        await self.channel_layer.group_discard(workers_relay.WORKERS_GROUP, self.channel_name)
        if getattr(self, "joined", False):
            await workers_relay.relay_leave()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Nothing to receive: the board is read-only."""

    async def workers_board(self, message: dict[str, Any]) -> None:
        board = workers_relay.board_in_scope(message["board"], self.tenant_scope)
        states = message["states"] if self.tenant_scope is None else workers_relay.state_counts([board])
        await self.send(text_data=board_html(board, states))
