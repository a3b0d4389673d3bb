"""Existing history moves into the trace document (migration 0003), in sequence order."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

BEFORE = [("invocations", "0002_invocation_gateway_instance")]
AFTER = [("invocations", "0003_trace_document")]


def test_event_rows_become_the_invocations_trace_document():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    Invocation = apps.get_model("invocations", "Invocation")
    InvocationEvent = apps.get_model("invocations", "InvocationEvent")
    traced = Invocation.objects.create(plugin_name="subtract_numbers", status="succeeded")
    bare = Invocation.objects.create(plugin_name="nope", status="rejected")
    for seq in (2, 1, 3):
        InvocationEvent.objects.create(
            invocation=traced,
            seq=seq,
            source="client",
            target="gateway",
            kind=f"k{seq}",
            phase=1,
            detail="d",
            offset_ms=seq,
        )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    apps = executor.loader.project_state(AFTER).apps
    Invocation = apps.get_model("invocations", "Invocation")
    assert [e["kind"] for e in Invocation.objects.get(id=traced.id).trace] == ["k1", "k2", "k3"]
    assert Invocation.objects.get(id=traced.id).trace[0] == {
        "seq": 1,
        "phase": 1,
        "offset_ms": 1.0,
        "source": "client",
        "target": "gateway",
        "kind": "k1",
        "detail": "d",
    }
    assert Invocation.objects.get(id=bare.id).trace == []
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
