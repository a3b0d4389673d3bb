"""Views that need no supervisor, with pytest-django's client and test database."""

from __future__ import annotations

import pytest

from platform_core.invocations.models import Invocation, Status

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(client):
    """Django's test client with a staff API key."""
    from platform_core.tenancy.services import api_key_create

    _, key = api_key_create(tenant_slug="tests", name="views", is_staff=True)
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def test_registry_holds_the_seed_plugins(client):
    plugins = {p["name"]: p for p in client.get("/api/v1/plugins").json()["plugins"]}
    assert {"add_numbers", "multiply_numbers", "subtract_numbers", "divide_numbers", "slow_count"} <= set(plugins)
    assert plugins["add_numbers"]["runtime"] == "java"
    assert plugins["subtract_numbers"]["operation"] == "subtract"


def test_plugin_detail_has_schemas_and_unknown_is_404(client):
    detail = client.get("/api/v1/plugins/subtract_numbers").json()
    assert detail["input_schema"]["required"] == ["operand1", "operand2"]
    missing = client.get("/api/v1/plugins/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_plugin"


def test_invocation_detail_404_and_list(client):
    Invocation.objects.create(plugin_name="subtract_numbers", status=Status.SUCCEEDED, http_status=200)
    listing = client.get("/api/v1/invocations").json()
    assert listing["count"] == 1 and listing["results"][0]["plugin"] == "subtract_numbers"
    response = client.get("/api/v1/invocations/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_invocation"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_oversized_body_is_413_json_and_recorded(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    response = client.post(
        "/api/v1/calculate/subtract", data=b"{" + b" " * 4096 + b"}", content_type="application/json"
    )
    assert response.status_code == 413
    body = response.json()
    assert body["error"]["code"] == "request_too_large"
    stored = Invocation.objects.get(id=body["invocation_id"])
    assert (stored.status, stored.http_status, stored.arguments) == (Status.REJECTED, 413, None)
    assert [e["kind"] for e in stored.trace] == ["request", "refused", "response"]


def test_oversized_body_of_an_anonymous_caller_is_401_first(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    del client.defaults["HTTP_AUTHORIZATION"]
    response = client.post(
        "/api/v1/calculate/subtract", data=b"{" + b" " * 4096 + b"}", content_type="application/json"
    )
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"
    assert not Invocation.objects.exists()


def test_admin_lists_plugins_and_invocations(admin_client):
    Invocation.objects.create(plugin_name="subtract_numbers", status=Status.FAILED, http_status=502)
    assert admin_client.get("/admin/registry/pluginspec/").status_code == 200
    page = admin_client.get("/admin/invocations/invocation/")
    assert page.status_code == 200 and b"subtract_numbers" in page.content
