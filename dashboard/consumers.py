"""WebSocket consumers of the dashboard: join a group, forward its messages as htmx fragments.

The logic (what to show, which fragments) is in ``live`` and ``workers_relay``; these classes
only subscribe, call it, and send what it renders.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from dashboard import workers_relay
from dashboard.live import LiveFollower
from platform_core.invocations.live import ALL_INVOCATIONS_GROUP, ANNOUNCE_INTERVAL_S, audience, invocation_group
from platform_core.invocations.models import FINAL_STATUSES, Invocation
from platform_core.invocations.selectors import invocation_with_trace
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


# Close codes: 4401 not logged in, 4403 another tenant's invocation (or none).
NOT_LOGGED_IN, FORBIDDEN = 4401, 4403


class InvocationLiveConsumer(AsyncWebsocketConsumer):
    """``/ws/live/`` (the latest invocation), ``/ws/live/<session>/`` (a dashboard tab's), and
    ``/ws/invocations/<id>/`` (one invocation). Anonymous connections are refused; a viewer only
    receives the events of invocations of their own tenant (staff: all)."""

    async def connect(self) -> None:
        self.viewer = await _viewer(self.scope.get("user"))
        if self.viewer is None:
            await self.close(code=NOT_LOGGED_IN)
            return
        kwargs = self.scope["url_route"]["kwargs"]
        invocation_id = str(kwargs.get("invocation_id", ""))
        if invocation_id:
            tenant = await _tenant_of(invocation_id)
            if tenant is None or not self.viewer.may_see(tenant):
                await self.close(code=FORBIDDEN)
                return
        self.follower = LiveFollower(session=kwargs.get("session", ""), invocation_id=invocation_id)
        self.group = invocation_group(invocation_id) if invocation_id else ALL_INVOCATIONS_GROUP
        await self.channel_layer.group_add(self.group, self.channel_name)
        await audience.joined()
        self.announcer = asyncio.ensure_future(self._announce())
        await self.accept()
        # Subscribed first, then looked up: an invocation that finished before we joined is sent whole.
        if invocation_id and (stored := await _finished_invocation(invocation_id)) is not None:
            await self.send(text_data=self.follower.on_stored(stored))

    async def _announce(self) -> None:
        """Live events are sent only while someone watches: say so while connected."""
        while True:
            await asyncio.sleep(ANNOUNCE_INTERVAL_S)
            await audience.announce()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            self.announcer.cancel()
            await audience.left()
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Nothing to receive: the view is read-only."""

    async def invocation_batch(self, message: dict[str, Any]) -> None:
        """Live events and state changes of one or more invocations (``invocations.live``), in order."""
        html: list[str] = []
        for batch in message["batches"]:
            if not self.viewer.may_see((batch.get("context") or {}).get("tenant_id", "")):
                continue
            for item in batch["items"]:
                single = {"invocation_id": batch["invocation_id"], "context": batch["context"]}
                if "event" in item:
                    html.append(self.follower.on_event({**single, "event": item["event"]}))
                    continue
                fragment, send_stored = self.follower.on_state({**single, **item["state"]})
                html.append(fragment)
                if send_stored and (stored := await _finished_invocation(batch["invocation_id"])) is not None:
                    html.append(self.follower.on_stored(stored))
        if text := "".join(html):
            await self.send(text_data=text)


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
