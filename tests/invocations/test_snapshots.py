"""A running trace answers a viewer's request for its events so far, through the channel layer."""

from __future__ import annotations

import asyncio
import uuid

from channels.layers import get_channel_layer

from platform_core.invocations.snapshots import snapshot_request
from platform_core.invocations.trace import Trace
from platform_core.invocations.vocabulary import EventKind as K


async def test_the_process_that_runs_an_invocation_sends_its_events_so_far():
    layer = get_channel_layer()
    viewer = await layer.new_channel()
    trace = Trace(str(uuid.uuid4()), context={"tenant_id": "default"})
    trace.add(K.REQUEST, "POST /api/v1/calculate/subtract")
    trace.add(K.LOOKUP, 'getPlugin("subtract")')
    await asyncio.sleep(0)  # the answering task joins its group
    await snapshot_request(layer, invocation_id=trace.invocation_id, reply_to=viewer)
    message = await asyncio.wait_for(layer.receive(viewer), 5)
    (batch,) = message["batches"]
    assert message["type"] == "invocation.batch" and batch["snapshot"] is True
    assert batch["invocation_id"] == trace.invocation_id and batch["context"] == {"tenant_id": "default"}
    assert [item["event"]["seq"] for item in batch["items"]] == [1, 2]

    await snapshot_request(layer, invocation_id=str(uuid.uuid4()), reply_to=viewer)  # nobody runs it
    try:
        await asyncio.wait_for(layer.receive(viewer), 0.3)
    except TimeoutError:
        pass
    else:
        raise AssertionError("an invocation nobody runs was answered")
