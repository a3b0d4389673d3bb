"""API keys, tenant scoping and admission control, with the test database and Django's test client."""

from __future__ import annotations

import pytest

from platform_core.invocations.models import Invocation, Status
from platform_core.tenancy.admission import LocalAdmission, Refused
from platform_core.tenancy.callers import Caller, TenantLimits
from platform_core.tenancy.models import ApiKey, Tenant
from platform_core.tenancy.services import api_key_cache_clear, api_key_create, api_key_owner

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    api_key_cache_clear()
    yield
    api_key_cache_clear()


def bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def test_keys_are_stored_hashed_and_resolve_to_their_tenant():
    row, key = api_key_create(tenant_slug="acme", name="billing")
    assert key.startswith(f"pp_{row.prefix}_")
    assert key not in row.key_hash
    assert ApiKey.objects.filter(key_hash__contains=key).count() == 0
    owner = api_key_owner(key)
    assert owner is not None
    assert (owner.tenant, owner.user, owner.is_staff) == ("acme", "key:billing", False)
    assert api_key_owner(key[:-1] + ("x" if key[-1] != "x" else "y")) is None
    assert api_key_owner("pp_nothing_here") is None
    assert api_key_owner("garbage") is None


def test_revoked_keys_stop_working():
    row, key = api_key_create(tenant_slug="acme", name="old")
    row.revoked = True
    row.save()  # the save clears this process's cache at once
    assert api_key_owner(key) is None


def test_api_needs_a_key(client):
    response = client.get("/api/v1/plugins")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")
    posted = client.post("/api/v1/calculate/subtract", {"operand1": 1, "operand2": 2}, content_type="application/json")
    assert posted.status_code == 401
    assert Invocation.objects.count() == 0, "unauthenticated requests are not invocations of anyone"
    assert client.get("/api/v1/health").status_code == 200, "health stays public for load balancers"
    assert client.get("/api/v1/openapi.json").status_code == 200


def test_a_tenant_sees_only_its_own_invocations(client):
    _, acme = api_key_create(tenant_slug="acme", name="a")
    _, globex = api_key_create(tenant_slug="globex", name="g")
    _, staff = api_key_create(tenant_slug="ops", name="s", is_staff=True)
    mine = Invocation.objects.create(plugin_name="subtract_numbers", tenant_id="acme", status=Status.SUCCEEDED)
    theirs = Invocation.objects.create(plugin_name="subtract_numbers", tenant_id="globex", status=Status.SUCCEEDED)

    listed = client.get("/api/v1/invocations", {"tenant": "globex"}, **bearer(acme)).json()
    assert [i["id"] for i in listed["results"]] == [str(mine.id)], "the tenant filter cannot widen a tenant's view"
    assert client.get(f"/api/v1/invocations/{theirs.id}", **bearer(acme)).status_code == 404
    assert client.get(f"/api/v1/invocations/{theirs.id}", **bearer(globex)).status_code == 200
    everyone = client.get("/api/v1/invocations", **bearer(staff)).json()
    assert everyone["count"] == 2
    only_globex = client.get("/api/v1/invocations", {"tenant": "globex"}, **bearer(staff)).json()
    assert [i["id"] for i in only_globex["results"]] == [str(theirs.id)]


# The history is written by the record writer's own thread: these tests commit for real.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_context_ids_come_from_the_key_not_the_body(client, settings):
    settings.SUPERVISORS = {}
    _, key = api_key_create(tenant_slug="acme", name="svc")
    response = client.post(
        "/api/v1/calculate/subtract",
        {"operand1": 1, "operand2": 2, "tenant_id": "globex"},
        content_type="application/json",
        **bearer(key),
    )
    stored = Invocation.objects.get(id=response.json()["invocation_id"])
    assert stored.tenant_id == "acme"
    assert stored.user_id == "key:svc"


def test_admission_bounds_rate_and_concurrency():
    gate = LocalAdmission()
    caller = Caller(tenant_id="t", limits=TenantLimits(rate_per_s=1.0, burst=2, max_concurrent=5))
    gate.enter_now(caller)
    gate.enter_now(caller)
    with pytest.raises(Refused) as rate:
        gate.enter_now(caller)
    assert rate.value.code == "rate_limited"
    assert rate.value.retry_after >= 1

    busy = LocalAdmission()
    one = Caller(tenant_id="t", limits=TenantLimits(rate_per_s=100, burst=100, max_concurrent=1))
    ticket = busy.enter_now(one)
    with pytest.raises(Refused) as concurrency:
        busy.enter_now(one)
    assert concurrency.value.code == "too_many_concurrent"
    ticket.leave()
    ticket.leave()  # once only
    busy.enter_now(one)
    with pytest.raises(Refused):
        busy.enter_now(one)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_over_the_rate_is_429_with_retry_after(client):
    Tenant.objects.create(slug="tiny", rate_per_s=0.001, burst=1, max_concurrent=5)
    _, key = api_key_create(tenant_slug="tiny", name="k")
    body = {"operand1": "not a number", "operand2": 1}  # rejected by the schema: no worker needed
    first = client.post("/api/v1/calculate/subtract", body, content_type="application/json", **bearer(key))
    second = client.post("/api/v1/calculate/subtract", body, content_type="application/json", **bearer(key))
    assert first.status_code == 400
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "rate_limited"
    assert int(second["Retry-After"]) >= 1
    refused = Invocation.objects.get(id=second.json()["invocation_id"])  # recorded, with its tenant
    assert (refused.status, refused.http_status, refused.tenant_id, refused.error_code) == (
        "throttled",
        429,
        "tiny",
        "rate_limited",
    )
    assert [event["kind"] for event in refused.trace] == ["request", "refused", "response"]
