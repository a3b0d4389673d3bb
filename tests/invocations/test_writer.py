"""The record writer: concurrent writes are committed together, one failure spoils nothing else."""

from __future__ import annotations

import asyncio

import pytest
from django.db import IntegrityError
from django.utils import timezone

from platform_core.invocations.models import Invocation, Status
from platform_core.invocations.writer import RecordWriter

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


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


async def test_history_survives_a_plugin_deleted_while_cached():
    from platform_core.invocations.services import Finish, invocation_finish
    from platform_core.registry.models import PluginSpec, Runtime
    from platform_core.tenancy.callers import Caller

    # Transactional tests flush the tables: the runtimes made by the migration may be gone.
    runtime, _ = await Runtime.objects.aget_or_create(name="gone-rt", defaults={"command": ["w", "{socket}"]})
    plugin = await PluginSpec.objects.acreate(name="gone", runtime=runtime, entrypoint="x:y")
    await plugin.adelete()
    plugin.pk = 999_999  # what a gateway's registry cache may still hold
    finish = Finish(status=Status.REJECTED, http_status=400, plugin=plugin, plugin_name="gone")

    await invocation_finish(
        invocation_id="6f1c2a55-0000-4000-8000-000000000001",
        caller=Caller(),
        finish=finish,
        events=[],
        at=timezone.now(),
    )

    stored = await Invocation.objects.aget(id="6f1c2a55-0000-4000-8000-000000000001")
    assert stored.plugin_name == "gone"  # recorded all the same; its plugin id dangles (no constraint)
    assert stored.plugin_id == 999_999


async def test_invocation_rows_are_written_in_one_statement_per_kind_and_a_bad_row_spoils_nothing():
    from platform_core.invocations.services import Finish, invocation_finish, invocation_start
    from platform_core.tenancy.callers import Caller

    ids = [f"6f1c2a55-0000-4000-8000-{i:012d}" for i in range(1, 31)]
    plugin = type("Cached", (), {"pk": None, "name": "subtract_numbers", "runtime_id": "python"})()
    now = timezone.now()
    await asyncio.gather(
        *(
            invocation_start(invocation_id=i, plugin=plugin, caller=Caller(), arguments={"n": n}, at=now)
            for n, i in enumerate(ids)
        )
    )
    finish = Finish(status=Status.SUCCEEDED, http_status=200, plugin=plugin, plugin_name="subtract_numbers", result=1)
    bad = Finish(status=Status.SUCCEEDED, http_status=200, plugin=plugin, plugin_name="x" * 100, result=2)
    bad.error_message = "e"
    results = await asyncio.gather(
        *(invocation_finish(invocation_id=i, caller=Caller(), finish=finish, events=[], at=now) for i in ids[:-1]),
        # A row no database takes (an http status out of its column's range) fails alone.
        invocation_finish(
            invocation_id=ids[-1],
            caller=Caller(),
            finish=Finish(status=Status.SUCCEEDED, http_status=-5, plugin=plugin, plugin_name="p"),
            events=[],
            at=now,
        ),
        return_exceptions=True,
    )
    assert [isinstance(r, Exception) for r in results] == [False] * 29 + [True]
    rows = await asyncio.to_thread(
        lambda: {str(i): (s, a) for i, s, a in Invocation.objects.values_list("id", "status", "arguments")}
    )
    assert all(rows[i][0] == Status.SUCCEEDED for i in ids[:-1])
    assert rows[ids[-1]] == (Status.RUNNING, {"n": 29})  # its start stands; its failed finish is its own
    assert rows[ids[3]][1] == {"n": 3}  # a finish keeps the arguments of the start
