"""Live trace events: batched per moment, and not sent at all while nobody watches."""

from __future__ import annotations

import asyncio

from channels.layers import get_channel_layer

from platform_core.invocations.live import ALL_INVOCATIONS_GROUP, audience, invocation_group
from platform_core.invocations.trace import Trace
from platform_core.invocations.vocabulary import EventKind as K


async def _listen(group: str) -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return channel


async def test_nobody_watching_costs_no_message():
    layer = get_channel_layer()
    channel = await _listen(ALL_INVOCATIONS_GROUP)
    trace = Trace("quiet")
    for _ in range(30):
        trace.add(K.PROGRESS, "p", data={"percent": 1})
    await trace.close()  # flushes what would be sent
    assert await _nothing(layer, channel)


async def _nothing(layer, channel: str) -> bool:
    try:
        await asyncio.wait_for(layer.receive(channel), 0.1)
    except TimeoutError:
        return True
    return False


async def test_a_watched_invocations_events_arrive_in_one_batch_in_order():
    layer = get_channel_layer()
    everything, this_one = await _listen(ALL_INVOCATIONS_GROUP), await _listen(invocation_group("watched"))
    await audience.joined()
    try:
        trace = Trace("watched", context={"tenant_id": "acme"})
        trace.add(K.REQUEST, "POST /x")
        for step in range(28):
            trace.add(K.PROGRESS, f"step {step}", data={"percent": step})
        trace.publish_state({"status": "succeeded"})
        await trace.close()
        for channel in (everything, this_one):
            message = await asyncio.wait_for(layer.receive(channel), 2)
            assert message["type"] == "invocation.batch"
            (batch,) = message["batches"]
            assert (batch["invocation_id"], batch["context"]) == ("watched", {"tenant_id": "acme"})
            items = batch["items"]
            assert [item["event"]["seq"] for item in items[:-1]] == list(range(1, 30))
            assert items[-1] == {"state": {"status": "succeeded"}}
    finally:
        await audience.left()
