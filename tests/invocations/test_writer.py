"""The record writer: concurrent writes are committed together, one failure spoils nothing else."""

from __future__ import annotations

import asyncio

import pytest
from django.db import IntegrityError

from platform_core.invocations.models import Invocation, Status
from platform_core.invocations.writer import RecordWriter

pytestmark = pytest.mark.django_db(transaction=True)


async def test_concurrent_writes_are_batched_and_each_caller_gets_its_result():
    writer = RecordWriter()
    created = await asyncio.gather(
        *(
            writer.write(lambda i=i: Invocation.objects.create(plugin_name=f"p{i}", status=Status.SUCCEEDED))
            for i in range(20)
        )
    )

    assert sorted(i.plugin_name for i in created) == sorted(f"p{i}" for i in range(20))
    assert await asyncio.to_thread(Invocation.objects.count) == 20


async def test_one_failing_write_does_not_undo_the_others():
    writer = RecordWriter()
    existing = await writer.write(lambda: Invocation.objects.create(plugin_name="first", status=Status.SUCCEEDED))

    def duplicate() -> Invocation:
        return Invocation.objects.create(id=existing.id, plugin_name="dup", status=Status.SUCCEEDED)

    results = await asyncio.gather(
        writer.write(lambda: Invocation.objects.create(plugin_name="a", status=Status.SUCCEEDED)),
        writer.write(duplicate),
        writer.write(lambda: Invocation.objects.create(plugin_name="b", status=Status.SUCCEEDED)),
        return_exceptions=True,
    )

    assert isinstance(results[1], IntegrityError)
    names = await asyncio.to_thread(lambda: sorted(Invocation.objects.values_list("plugin_name", flat=True)))
    assert names == ["a", "b", "first"]
