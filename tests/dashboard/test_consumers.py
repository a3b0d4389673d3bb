"""The dashboard's WebSocket consumers, through the real ASGI application (origin check included)."""

from __future__ import annotations

import asyncio
import json
import uuid

import grpc
import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from platform_core.asgi import application
from platform_core.invocations.live import ALL_INVOCATIONS_GROUP, invocation_group
from platform_core.invocations.models import Invocation
from platform_core.invocations.trace import Trace
from platform_core.invocations.vocabulary import EventKind as K
from platform_core.supervisor.grpc_service import add_to_server
from platform_core.supervisor.model import PluginRef
from tests.dashboard.conftest import login_cookie
from tests.supervisor.conftest import make_supervisor

# Committed for real (the consumers read from their own threads); serialized_rollback restores
# the migrations' data (content types, built-in plugins) for the transactional tests after these.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
ORIGIN = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
SESSION = "dash-" + "1" * 32


async def _connect(path: str, cookie: bytes | None = None) -> WebsocketCommunicator:
    """A logged-in connection (a staff user unless ``cookie`` says otherwise)."""
    cookie = cookie or await database_sync_to_async(login_cookie)()
    communicator = WebsocketCommunicator(application, path, headers=[*ORIGIN, (b"cookie", cookie)])
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def _receive_until(communicator: WebsocketCommunicator, needle: str, seconds: float = 10.0) -> str:
    """Everything received until a message containing ``needle``."""
    received = ""
    async with asyncio.timeout(seconds):
        while needle not in received:
            received += await communicator.receive_from(timeout=seconds)
    return received


def _batch(invocation_id: str, *items: dict, session: str = SESSION) -> dict:
    """A live message as ``invocations.live`` sends it: one invocation's items, in order."""
    batch = {"invocation_id": invocation_id, "context": {"session_id": session}, "items": list(items)}
    return {"type": "invocation.batch", "batches": [batch]}


def _event(invocation_id: str, seq: int, kind: str, session: str = SESSION, **extra) -> dict:
    event = {
        "seq": seq,
        "source": "gateway",
        "target": "worker",
        "kind": kind,
        "phase": 5,
        "detail": kind,
        "offset_ms": seq * 1.5,
        **extra,
    }
    return _batch(invocation_id, {"event": event}, session=session)


async def test_a_page_from_another_origin_cannot_subscribe():
    communicator = WebsocketCommunicator(application, "/ws/live/", headers=[(b"origin", b"http://evil.example")])
    connected, _ = await communicator.connect()
    assert not connected


async def test_live_view_draws_the_arrows_of_its_own_session_as_a_trace_publishes_them():
    communicator = await _connect(f"/ws/live/{SESSION}/")
    invocation_id = str(uuid.uuid4())
    other = Trace(str(uuid.uuid4()), context={"session_id": "dash-someone-else"})
    other.add(K.REQUEST, "POST /elsewhere")
    trace = Trace(invocation_id, context={"session_id": SESSION})
    trace.add(K.REQUEST, "POST /run")
    trace.add(K.PROGRESS, "Progress(40%)", data={"percent": 40.0, "message": "Counted 2 of 5"})
    first = await _receive_until(communicator, 'data-seq="1"')
    assert f"{invocation_id[:10]}" in first and "POST /run" in first and "POST /elsewhere" not in first
    progress = first if "Counted 2 of 5" in first else await _receive_until(communicator, "Counted 2 of 5")
    assert 'data-kind="progress"' in progress and "width: 40.0%" in progress and "Counted 2 of 5" in progress
    await trace.close()
    await other.close()
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_a_viewer_that_missed_arrows_gets_the_stored_trace_when_the_invocation_finishes():
    trace = [
        {"seq": seq, "source": "client", "target": "gateway", "kind": f"k{seq}", "phase": 1, "offset_ms": seq}
        for seq in (1, 2, 3)
    ]
    invocation = await Invocation.objects.acreate(
        plugin_name="slow_count", status="succeeded", http_status=200, trace=trace
    )
    invocation_id = str(invocation.id)
    communicator = await _connect(f"/ws/live/{SESSION}/")
    layer = get_channel_layer()
    await layer.group_send(ALL_INVOCATIONS_GROUP, _event(invocation_id, 3, "k3"))  # 1 and 2 were missed
    await _receive_until(communicator, 'data-seq="3"')
    final = _batch(invocation_id, {"state": {"status": "succeeded", "http_status": 200, "timings_ms": {"total": 3.0}}})
    await layer.group_send(ALL_INVOCATIONS_GROUP, final)
    stored = await _receive_until(communicator, 'data-kind="k1"')
    # The whole list is replaced (not appended to): arrows 1 to 3, in order.
    assert '<ol id="live-events" class="trace-events">' in stored
    assert stored.index('data-kind="k1"') < stored.index('data-kind="k2"') < stored.rindex('data-kind="k3"')
    await communicator.disconnect()


async def test_watching_one_invocation_that_has_already_finished_sends_it_whole():
    invocation = await Invocation.objects.acreate(
        plugin_name="subtract_numbers",
        status="failed",
        http_status=502,
        error_code="division_by_zero",
        error_message="cannot divide by 0",
        trace=[{"seq": 1, "source": "client", "target": "gateway", "kind": "request", "phase": 1, "offset_ms": 0.2}],
    )
    communicator = await _connect(f"/ws/invocations/{invocation.id}/")
    html = await _receive_until(communicator, 'data-kind="request"')
    assert "division_by_zero" in html and "failed" in html
    # Live messages of that invocation go to its own group as well.
    await get_channel_layer().group_send(invocation_group(str(invocation.id)), _event(str(invocation.id), 2, "late"))
    assert 'data-kind="late"' in await communicator.receive_from()
    await communicator.disconnect()


async def test_workers_board_follows_the_supervisors_and_shows_one_that_is_down(socket_root, settings):
    supervisor = make_supervisor(socket_root)
    server = grpc.aio.server()
    add_to_server(server, supervisor)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    settings.PLATFORM_SUPERVISORS = {"python": [f"127.0.0.1:{port}"], "java": ["127.0.0.1:9"]}
    communicator = None
    try:
        communicator = await _connect("/ws/workers/")
        boards = await _receive_until(communicator, 'id="sup-127-0-0-1-9"')
        boards += await _receive_until(communicator, f'id="sup-127-0-0-1-{port}"') if str(port) not in boards else ""
        assert ">down<" in boards and "retrying in" in boards
        plugin = PluginRef(name="subtract_numbers", runtime="python", entrypoint="plugins.subtract_numbers:plugin")
        worker, _, _, _ = await supervisor.allocate(plugin)
        executing = await _receive_until(communicator, 'data-state="executing"')
        assert worker.worker_id in executing and "state-counts-data" in executing and "executing \u00d7 1" in executing
        await supervisor.release(worker.worker_id, reason="done")
        removed = await _receive_until(communicator, "Recently removed")
        assert 'data-state="removed"' in removed
    finally:
        if communicator is not None:
            await communicator.disconnect()
        await supervisor.shutdown()
        await server.stop(0)


async def test_a_tenants_user_sees_only_the_workers_started_for_its_tenant(socket_root, settings):
    """Issue 11, items 8 and 9: the workers board (its page and ``/ws/workers/``) shows a tenant's
    user the workers of its own tenant only, a user of no tenant none; staff see every one."""
    from asgiref.sync import sync_to_async
    from django.test import Client

    supervisor = make_supervisor(socket_root)
    server = grpc.aio.server()
    add_to_server(server, supervisor)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    settings.PLATFORM_SUPERVISORS = {"python": [f"127.0.0.1:{port}"]}
    plugin = PluginRef(name="subtract_numbers", runtime="python", entrypoint="plugins.subtract_numbers:plugin")
    communicators: list[WebsocketCommunicator] = []
    try:
        acme = (await supervisor.allocate(plugin, tenant="acme")).worker
        globex = (await supervisor.allocate(plugin, tenant="globex")).worker
        nobodys = (await supervisor.allocate(plugin)).worker  # of no tenant, like a pooled worker
        alice = await database_sync_to_async(login_cookie)("alice", staff=False, tenant="acme")
        drifter = await database_sync_to_async(login_cookie)("drifter", staff=False)  # a user of no tenant
        for cookie in (alice, None, drifter):
            communicators.append(await _connect("/ws/workers/", cookie))
        mine, everything = [await _receive_until(c, acme.worker_id) for c in communicators[:2]]
        for worker in (globex, nobodys):
            if worker.worker_id not in everything:
                everything += await _receive_until(communicators[1], worker.worker_id)
        assert globex.worker_id not in mine and nobodys.worker_id not in mine
        drifters = ""
        while not await communicators[2].receive_nothing(timeout=0.5):
            drifters += await communicators[2].receive_from()
        assert not {acme.worker_id, globex.worker_id, nobodys.worker_id} & set(drifters.split('"'))
        assert "executing \u00d7 1" in mine  # the state counts are of its own workers too
        await supervisor.release(globex.worker_id, reason="done")
        await _receive_until(communicators[1], "Recently removed")
        while not await communicators[0].receive_nothing(timeout=0.5):
            assert globex.worker_id not in await communicators[0].receive_from()

        def page(cookie: bytes) -> str:
            client = Client(HTTP_COOKIE=cookie.decode())
            return client.get("/workers").content.decode()

        html = await sync_to_async(page, thread_sensitive=False)(alice)
        assert acme.worker_id in html and globex.worker_id not in html and nobodys.worker_id not in html
        html = await sync_to_async(page, thread_sensitive=False)(drifter)
        assert not {acme.worker_id, globex.worker_id, nobodys.worker_id} & set(html.split('"'))
    finally:
        for communicator in communicators:
            await communicator.disconnect()
        await supervisor.shutdown()
        await server.stop(0)


async def test_anonymous_connections_are_refused():
    communicator = WebsocketCommunicator(application, "/ws/live/", headers=ORIGIN)
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4401
    workers = WebsocketCommunicator(application, "/ws/workers/", headers=ORIGIN)
    assert (await workers.connect())[0] is False


async def test_a_tenants_user_gets_only_its_tenants_events_and_invocations():
    cookie = await database_sync_to_async(login_cookie)("alice", staff=False, tenant="acme")
    theirs = await database_sync_to_async(Invocation.objects.create)(plugin_name="subtract_numbers", tenant_id="globex")
    refused = WebsocketCommunicator(
        application, f"/ws/invocations/{theirs.id}/", headers=[*ORIGIN, (b"cookie", cookie)]
    )
    connected, code = await refused.connect()
    assert not connected
    assert code == 4403

    communicator = await _connect(f"/ws/live/{SESSION}/", cookie)
    layer = get_channel_layer()
    other = _event(str(uuid.uuid4()), 1, "request")
    other["batches"][0]["context"]["tenant_id"] = "globex"
    mine = _event(str(uuid.uuid4()), 1, "request")
    mine["batches"][0]["context"]["tenant_id"] = "acme"
    await layer.group_send(ALL_INVOCATIONS_GROUP, other)
    await layer.group_send(ALL_INVOCATIONS_GROUP, mine)
    received = await communicator.receive_from(timeout=5)
    assert mine["batches"][0]["invocation_id"][:8] in received
    assert other["batches"][0]["invocation_id"][:8] not in received
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_an_invocations_page_opened_mid_run_gets_the_arrows_so_far_then_the_rest_then_its_summary():
    invocation = await Invocation.objects.acreate(plugin_name="slow_count", tenant_id="default", status="running")
    invocation_id = str(invocation.id)
    trace = Trace(invocation_id, context={"tenant_id": "default", "session_id": "elsewhere"})
    trace.add(K.REQUEST, "POST /api/v1/plugins/slow_count/invoke")
    trace.add(K.LOOKUP, 'getPlugin("slow_count")')
    trace.add(K.LOOKUP_RESULT, "PluginSpec(python, plugins.slow_count:plugin, ephemeral)")  # nobody watched these
    communicator = await _connect(f"/ws/invocations/{invocation_id}/")
    so_far = await _receive_until(communicator, 'data-kind="lookup_result"')
    assert '<ol id="live-events" class="trace-events">' in so_far  # the snapshot, as the whole list
    assert so_far.index('data-seq="1"') < so_far.index('data-seq="2"') < so_far.index('data-seq="3"')
    trace.add(K.VALIDATE_INPUT, "Build PluginRef & Context")
    assert 'data-seq="4"' in await _receive_until(communicator, 'data-seq="4"')
    trace.add(K.RESPONSE, "HTTP 200")
    stored = [event.stored() for event in trace.events]
    await Invocation.objects.filter(id=invocation_id).aupdate(
        status="succeeded", http_status=200, result={"counted": 5}, trace=stored, total_ms=12.0
    )
    trace.publish_state(
        {"status": "succeeded", "http_status": 200, "timings_ms": {"total": 12.0}, "result": {"counted": 5}}
    )
    summary = await _receive_until(communicator, 'id="invocation-summary"')
    assert 'data-status="succeeded"' in summary and "&quot;counted&quot;: 5" in summary
    await trace.close()
    await communicator.disconnect()


async def test_the_live_page_lists_the_runs_in_flight_and_follows_the_one_picked():
    older = await Invocation.objects.acreate(plugin_name="slow_count", tenant_id="default", status="running")
    newer = await Invocation.objects.acreate(plugin_name="subtract_numbers", tenant_id="default", status="running")
    theirs = await Invocation.objects.acreate(plugin_name="slow_count", tenant_id="globex", status="running")
    cookie = await database_sync_to_async(login_cookie)("bob", staff=False, tenant="default")
    communicator = await _connect("/ws/live/", cookie)
    first = await _receive_until(communicator, 'id="live-header"')
    assert f'data-invocation="{older.id}"' in first and f'data-invocation="{newer.id}"' in first
    assert str(theirs.id) not in first  # another tenant's run is not listed
    assert f"{str(newer.id)[:10]}" in first[first.index('id="live-header"') :]  # the newest is followed
    await communicator.send_to(text_data=json.dumps({"follow": str(theirs.id)}))  # not theirs to watch
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.send_to(text_data=json.dumps({"follow": str(older.id)}))
    picked = await _receive_until(communicator, 'id="runs-in-flight"')
    assert f"{str(older.id)[:10]}" in picked and "Follow the newest" in picked
    await communicator.send_to(text_data="not json")  # ignored, the socket stays open
    await communicator.send_to(text_data=json.dumps({"follow": ""}))
    assert "following the newest" in await _receive_until(communicator, 'id="runs-in-flight"')
    await communicator.disconnect()
