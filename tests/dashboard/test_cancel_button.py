"""The dashboard's Cancel button: a queued run is taken off the queue and never runs."""

from __future__ import annotations

import pytest

from platform_core.gateway import invocation_queue
from platform_core.invocations.models import Invocation, QueuedInvocation, Status
from platform_core.registry.models import PluginSpec
from platform_core.tenancy.callers import Caller

pytestmark = pytest.mark.django_db


def test_cancel_button_cancels_a_queued_run(client):
    plugin = PluginSpec.objects.get(name="slow_count")
    invocation_id = "6f1c2a4e-0000-4000-8000-000000000001"
    invocation_queue._enqueue(
        invocation_id=invocation_id,
        plugin=plugin,
        body=b'{"steps": 1}',
        caller=Caller(tenant_id="default"),
        origin="POST /api/v1/plugins/slow_count/invocations",
    )
    page = client.get(f"/invocations/{invocation_id}").content.decode()
    assert 'data-testid="cancel"' in page and "queued" in page

    response = client.post(f"/invocations/{invocation_id}/cancel")

    assert response.status_code == 302 and response["Location"] == f"/invocations/{invocation_id}"
    stored = Invocation.objects.get(pk=invocation_id)
    assert stored.status == Status.CANCELLED and stored.error_code == "cancelled"
    assert [event["kind"] for event in stored.trace] == ["queued", "invocation_cancelled"]
    assert not QueuedInvocation.objects.exists()
    assert invocation_queue.invocation_claim() is None
    page = client.get(f"/invocations/{invocation_id}").content.decode()
    assert 'data-testid="cancel"' not in page and "cancelled" in page
