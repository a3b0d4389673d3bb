"""The dashboard's pages with pytest-django's client (htmx requests carry HTTP_HX_REQUEST)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from dashboard import services
from platform_core.gateway import errors
from platform_core.gateway.execution import Outcome
from platform_core.invocations.models import Invocation, Status

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}
SESSION = "dash-" + "0" * 32


@pytest.fixture
def executed(monkeypatch):
    """Replaces the gateway's execution service; answers what ``executed.outcome`` says."""

    class Fake:
        calls: list[dict] = []
        outcome = Outcome(
            str(uuid.uuid4()),
            200,
            result={"result": 5.0},
            worker_id="worker-20001",
            timings_ms={"allocation": 50.0, "init": 5.0, "execution": 20.0, "release": 15.0, "total": 100.0},
        )

    async def fake_execute(**kwargs):
        Fake.calls.append(kwargs)
        return Fake.outcome

    monkeypatch.setattr(services, "invocation_submit", fake_execute)
    Fake.calls = []
    return Fake


def _invocation(**fields) -> Invocation:
    defaults = {
        "plugin_name": "subtract_numbers",
        "runtime": "python",
        "backend": "process",
        "tenant_id": "default",
        "status": Status.SUCCEEDED,
        "http_status": 200,
        "allocation_ms": 60.0,
        "init_ms": 5.0,
        "execution_ms": 10.0,
        "release_ms": 20.0,
        "total_ms": 100.0,
        "worker_warm": False,
    }
    if "plugin" not in fields:
        from platform_core.registry.models import PluginSpec

        fields["plugin"] = PluginSpec.objects.filter(name=fields.get("plugin_name", defaults["plugin_name"])).first()
    return Invocation.objects.create(**{**defaults, **fields})


def test_calculator_page_has_the_operations_and_a_live_panel(client):
    page = client.get("/")
    html = page.content.decode()
    assert page.status_code == 200
    assert '<option value="subtract" selected>' in html and 'value="add"' in html
    assert 'ws-connect="/ws/live/dash-' in html and 'hx-ext="ws"' in html
    assert "htmx-2.min.js" in html and "hx-ws-2.min.js" in html and "trace-view.js" in html
    assert "mermaid" not in html  # drawn by hand: Mermaid is loaded by the workers page only
    assert 'href="/admin/"' in html
    # Accessibility: a skip link to the main content, an announced live status, required fields.
    assert '<a class="skip-link" href="#main">' in html and '<main class="container" id="main"' in html
    assert 'id="live-announce" class="visually-hidden" role="status" aria-live="polite"' in html
    assert 'id="field-operand1" name="operand1" type="text" inputmode="decimal"' in html
    assert html.count('required aria-required="true"') == 3  # operation and both operands
    assert 'role="img" aria-label="Sequence diagram' in html and "the diagram as text" in html


def test_calculator_run_answers_the_result_fragment_in_place(client, executed):
    response = client.post(
        "/run", {"operation": "subtract", "operand1": "10", "operand2": "5", "session": SESSION}, **HX
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and 'id="calculator"' in html
    assert "HTTP 200" in html and "&quot;result&quot;: 5.0" in html
    assert f'value="{SESSION}"' in html
    (call,) = executed.calls
    assert call["name"] == "subtract" and json.loads(call["body"]) == {"operand1": 10, "operand2": 5}
    caller = call["caller"]
    assert (caller.tenant_id, caller.session_id) == ("default", SESSION)


def test_calculator_without_htmx_renders_the_whole_page(client, executed):
    response = client.post("/run", {"operation": "subtract", "operand1": "10", "operand2": "5"})
    assert b"<html" in response.content and b"HTTP 200" in response.content
    assert executed.calls[0]["caller"].session_id.startswith("dash-")  # a fresh one, the posted one was missing


def test_schema_errors_are_shown_next_to_their_field(client, executed):
    details = [{"path": "operand2", "message": "'operand2' is a required property"}]
    error = errors.InvalidInput("arguments do not match the input schema", details=details)
    executed.outcome = Outcome(str(uuid.uuid4()), 400, error=error)
    html = client.post("/run", {"operation": "subtract", "operand1": "10", "operand2": ""}, **HX).content.decode()
    assert 'id="field-operand2-error"' in html and "&#x27;operand2&#x27; is a required property" in html
    assert "HTTP 400" in html and "invalid_input" in html
    assert json.loads(executed.calls[0]["body"]) == {"operand1": 10}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_missing_field_is_reported_at_that_field_by_the_gateway_itself(client):
    # The gateway's own validation (no worker is needed to refuse it): its 400 names the field by path.
    html = client.post("/run", {"operation": "subtract", "operand1": "10", "operand2": ""}, **HX).content.decode()
    assert "HTTP 400" in html and "invalid_input" in html
    placed = '<p class="field-error" id="field-operand2-error">&#x27;operand2&#x27; is a required property</p>'
    assert placed in html, html
    assert 'class="error-list"' not in html  # nothing left over for the general list


def test_unknown_operation_is_reported_at_the_operation(client, executed):
    executed.outcome = Outcome(str(uuid.uuid4()), 404, error=errors.UnknownPlugin("no enabled plugin is called 'pow'"))
    html = client.post("/run", {"operation": "pow", "operand1": "1", "operand2": "2"}, **HX).content.decode()
    assert 'id="field-operation-error"' in html and "no enabled plugin" in html


def test_plugin_catalogue_and_its_generated_form(client, executed):
    listing = client.get("/plugins").content.decode()
    assert "slow_count" in listing and "Input schema" in listing
    page = client.get("/plugins/slow_count").content.decode()
    assert 'name="steps" type="text" inputmode="numeric"' in page and 'data-maximum="100"' in page
    assert 'value="600"' in page and "Counts to <code>steps</code>" in page  # the description's markup
    assert "Counts to <code>steps</code>" in listing
    html = client.post("/plugins/slow_count/run", {"steps": "2", "delay_ms": "10"}, **HX).content.decode()
    assert 'id="plugin-run"' in html and "HTTP 200" in html
    assert json.loads(executed.calls[0]["body"]) == {"steps": 2, "delay_ms": 10}
    assert client.get("/plugins/nope").status_code == 404


def test_history_filters_paginates_and_answers_htmx_with_the_table(client):
    old = _invocation(plugin_name="divide_numbers", status=Status.FAILED, http_status=502)
    Invocation.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    for _ in range(30):
        _invocation()
    page = client.get("/invocations").content.decode()
    assert "page 1 of 2" in page and "31 invocations" in page and 'class="phase-bar"' in page
    fragment = client.get("/invocations", {"plugin": "divide_numbers"}, **HX).content.decode()
    assert "<html" not in fragment and "divide_numbers" in fragment and "1 invocation" in fragment
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    recent = client.get("/invocations", {"since": since, "status": "failed"}, **HX).content.decode()
    assert "No invocation matches" in recent
    bad = client.get("/invocations", {"since": "yesterday"}, **HX).content.decode()
    assert "Ignored: since" in bad and "31 invocations" in bad


def test_invocation_page_replays_the_stored_trace(client):
    arrows = [
        ("request", "client", "gateway"),
        ("worker_allocated", "runtime_client", "gateway"),
        ("response", "gateway", "client"),
    ]
    trace = [
        {
            "seq": seq,
            "source": source,
            "target": target,
            "kind": kind,
            "phase": seq,
            "detail": f"d{seq}",
            "offset_ms": seq * 10.5,
        }
        for seq, (kind, source, target) in enumerate(arrows, start=1)
    ]
    invocation = _invocation(
        worker_id="worker-20001", arguments={"operand1": 10, "operand2": 5}, result={"result": 5}, trace=trace
    )
    html = client.get(f"/invocations/{invocation.id}").content.decode()
    assert 'data-replay="play"' in html and 'data-replay="step"' in html and "data-replay-speed" in html
    assert 'data-trace-view\n  data-worker="worker-20001" data-backend="process"' in html
    assert html.count('class="trace-event"') == 3 and 'data-offset="21.0"' in html and "31.5 ms" in html
    assert "worker-20001" in html and "ws-connect" not in html
    assert 'id="trace-events-waterfall" type="application/json"' in html  # the waterfall's document
    # Act on it: re-run (as it was, or edited), download, copy as curl with the key left to the shell.
    assert f'href="/plugins/subtract_numbers?from={invocation.id}&amp;autorun=1"' in html
    assert f'href="/invocations/{invocation.id}.json" download' in html
    assert "-H &quot;Authorization: Bearer $API_KEY&quot;" in html and "/api/v1/plugins/subtract_numbers/invoke" in html
    assert "Compare with the previous" not in html  # it is the first subtract
    later = _invocation(trace=trace, arguments={"operand1": 1, "operand2": 1})
    assert (
        f"/invocations/compare?a={invocation.id}&amp;b={later.id}"
        in client.get(f"/invocations/{later.id}").content.decode()
    )
    assert client.get(f"/invocations/{uuid.uuid4()}").status_code == 404


def test_a_running_invocation_is_watched_live(client):
    invocation = _invocation(status=Status.RUNNING, http_status=None, total_ms=None)
    html = client.get(f"/invocations/{invocation.id}").content.decode()
    assert f'ws-connect="/ws/invocations/{invocation.id}/"' in html


def test_timings_shows_medians_beside_the_seed(client):
    for total in (100.0, 300.0, 200.0):
        _invocation(total_ms=total)
    _invocation(status=Status.FAILED, total_ms=9999.0)
    html = client.get("/timings").content.decode()
    assert "<strong>200.0</strong>" in html and "9999" not in html
    assert "fresh worker" in html and "28.0\u00d7 faster" in html  # 5600 / 200: fresh workers of ephemeral plugins
    assert "Worker Spawn" in html and "~5.6 s" in html and "~5.7 s" in html and "400 ms" in html


def test_timings_compare_only_fresh_workers_of_ephemeral_plugins_with_the_seed(client):
    from platform_core.registry.models import PluginSpec

    pooled = PluginSpec.objects.get(name="subtract_numbers")
    pooled.pk, pooled.name, pooled.operation, pooled.mode = None, "subtract_pooled", None, "pooled"
    pooled.save()
    for _ in range(3):
        _invocation(plugin_name="subtract_pooled", plugin=pooled, worker_warm=True, total_ms=13.0)
    _invocation(plugin_name="subtract_pooled", plugin=pooled, worker_warm=False, total_ms=150.0)
    html = client.get("/timings").content.decode()
    assert "reused worker" in html and "fresh worker" in html
    assert "430.8\u00d7" not in html and "37.3\u00d7" not in html  # neither pooled row is set beside the seed
    assert html.count("n/a</span>") == 2


def test_workers_page_shows_a_supervisor_that_is_down(client, settings):
    settings.PLATFORM_SUPERVISORS = {"python": ["127.0.0.1:9"]}
    html = client.get("/workers").content.decode()
    assert 'id="sup-127-0-0-1-9"' in html and ">down<" in html and 'ws-connect="/ws/workers/"' in html


def test_admin_shows_the_trace_inline_and_links_to_the_diagram(admin_client):
    invocation = _invocation(
        trace=[
            {
                "seq": 1,
                "source": "client",
                "target": "gateway",
                "kind": "request",
                "phase": 1,
                "detail": "",
                "offset_ms": 0.1,
            }
        ]
    )
    page = admin_client.get(f"/admin/invocations/invocation/{invocation.id}/change/")
    html = page.content.decode()
    assert page.status_code == 200 and "request" in html
    assert f'href="/invocations/{invocation.id}"' in html  # "View on site": the diagram
    assert admin_client.get("/admin/invocations/invocation/?status__exact=succeeded&q=subtract").status_code == 200


def test_pages_need_a_login():
    from django.test import Client

    anonymous = Client()
    for path in ("/", "/live", "/workers", "/invocations", "/timings", "/plugins"):
        response = anonymous.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/accounts/login/")
    assert anonymous.get("/accounts/login/").status_code == 200


def test_a_tenants_user_sees_only_its_tenant(client, django_user_model):
    from platform_core.tenancy.models import Tenant, TenantMember

    user = django_user_model.objects.create_user("alice", password="x")
    TenantMember.objects.create(user=user, tenant=Tenant.objects.create(slug="acme"))
    mine = _invocation(tenant_id="acme")
    theirs = _invocation(tenant_id="globex")
    client.force_login(user)
    listing = client.get("/invocations", {"tenant": "globex"}).content.decode()
    assert str(mine.id)[:8] in listing
    assert str(theirs.id)[:8] not in listing
    assert client.get(f"/invocations/{theirs.id}").status_code == 404
    assert client.get(f"/invocations/{mine.id}").status_code == 200


def test_runs_act_for_the_users_tenant(client, django_user_model, executed):
    from platform_core.tenancy.models import Tenant, TenantMember

    user = django_user_model.objects.create_user("bob", password="x")
    TenantMember.objects.create(user=user, tenant=Tenant.objects.create(slug="acme"))
    client.force_login(user)
    client.post("/run", {"operation": "subtract", "operand1": "10", "operand2": "5", "session": SESSION}, **HX)
    caller = executed.calls[-1]["caller"]
    assert (caller.tenant_id, caller.user_id, caller.is_staff) == ("acme", "bob", False)


def test_a_user_without_a_tenant_sees_nothing_and_runs_nothing(client, django_user_model, executed):
    user = django_user_model.objects.create_user("drifter", password="x")
    theirs = _invocation(tenant_id="default")
    client.force_login(user)
    page = client.get("/").content.decode()
    assert 'data-testid="no-tenant"' in page and "belongs to no tenant" in page
    result = client.post("/run", {"operation": "subtract", "operand1": "1", "operand2": "1", "session": SESSION}, **HX)
    assert "no_tenant" in result.content.decode() and not executed.calls
    history = client.get("/invocations").content.decode()
    assert str(theirs.id)[:8] not in history and "0 invocations" in history
    assert client.get("/timings").status_code == 200


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_dashboard_runs_are_admitted_like_api_calls(client, django_user_model, settings):
    """One way in: the dashboard's runs count against the tenant's quota (429 past it), and are recorded."""
    from platform_core.tenancy.admission import admission
    from platform_core.tenancy.models import Tenant, TenantMember

    settings.PLATFORM_SUPERVISORS = {"python": ["127.0.0.1:9"]}  # nothing listens: 503 without a worker
    admission.reset()
    user = django_user_model.objects.create_user("carol", password="x")
    TenantMember.objects.create(user=user, tenant=Tenant.objects.create(slug="tiny", rate_per_s=0.001, burst=1))
    client.force_login(user)
    form = {"operation": "subtract", "operand1": "10", "operand2": "5", "session": SESSION}
    first = client.post("/run", form, **HX).content.decode()
    second = client.post("/run", form, **HX).content.decode()
    assert "HTTP 503" in first and "supervisor_unavailable" in first
    assert "HTTP 429" in second and "rate_limited" in second
    statuses = sorted(Invocation.objects.filter(tenant_id="tiny").values_list("http_status", flat=True))
    assert statuses == [429, 503]
    admission.reset()


def test_history_finds_by_id_request_worker_plugin_and_argument_values(client):
    ten = _invocation(arguments={"operand1": 10, "operand2": 5}, request_id="req-alpha", worker_id="worker-20007")
    _invocation(arguments={"operand1": 3, "operand2": 2, "note": {"by": "ann"}}, request_id="req-beta")
    _invocation(plugin_name="slow_count", arguments={"steps": 5}, request_id="req-gamma")

    def found(**query) -> str:
        html = client.get("/invocations", query, **HX).content.decode()
        return html.split('data-testid="history-count">')[1].split(" ")[0]

    assert found(q=str(ten.id)[:8]) == "1" and found(q=str(ten.id)) == "1"
    assert found(q=str(ten.id).replace("-", "")[:13]) == "1"  # an id's start, dashes or not
    assert found(q="req-alpha") == "1" and found(q="req-") == "3"
    assert found(q="worker-20007") == "1" and found(worker="20007") == "1"
    assert found(q="slow") == "1" and found(q="slow req-alpha") == "0"  # every word must match
    assert found(args="operand1=10") == "1" and found(args="operand1=10.0") == "1"  # JSON values
    assert found(args="operand2=5 operand1=10") == "1" and found(args="operand1=11") == "0"
    assert found(args="note.by=ann") == "1" and found(args="ann") == "1" and found(args="steps") == "1"
    assert found(args="operand1__gt=1") == "0"  # not a lookup: a word searched in the arguments


def test_history_plugin_filter_lists_the_registry_not_names_clients_asked_for(client):
    _invocation(plugin_name="pow", status=Status.REJECTED, http_status=404, plugin=None)
    page = client.get("/invocations").content.decode()
    options = page.split('id="f-plugin"')[1].split("</select>")[0]
    assert '<option value="subtract_numbers">' in options and "pow" not in options
    assert 'name="ids" value=' in page and "data-compare-button disabled" in page


def test_compare_sets_two_invocations_side_by_side_phase_by_phase(client):
    def recorded(name: str) -> dict:
        return json.loads((Path(__file__).parent / "traces" / f"{name}.json").read_text())

    cold, warm = recorded("subtract_pooled_cold"), recorded("subtract_pooled_warm")
    a = _invocation(
        trace=cold["trace"], arguments={"operand1": 10, "operand2": 5}, total_ms=cold["timings_ms"]["total"]
    )
    b = _invocation(
        trace=warm["trace"],
        arguments={"operand1": 10, "operand2": 6},
        worker_warm=True,
        total_ms=warm["timings_ms"]["total"],
    )
    html = client.get("/invocations/compare", {"a": a.id, "b": b.id}).content.decode()
    assert 'data-testid="compare-table"' in html and 'data-key="spawn" data-notable="true"' in html
    assert 'data-key="phase-1"' in html and 'data-key="phase-1" data-notable' not in html
    assert "Arguments differ in: operand2" in html and "reused (warm)" in html and "fresh" in html
    assert html.count('type="application/json"') >= 3  # both waterfalls' documents (and the vocabulary)
    by_ticks = client.get(f"/invocations/compare?ids={a.id}&ids={b.id}")
    assert by_ticks.status_code == 200
    assert client.get("/invocations/compare", {"ids": a.id}).status_code == 400
    assert client.get("/invocations/compare", {"a": a.id, "b": "nope"}).status_code == 404
    assert client.get("/invocations/compare", {"a": a.id, "b": uuid.uuid4()}).status_code == 404


def test_an_invocation_downloads_as_the_apis_json(client):
    trace = [{"seq": 1, "phase": 1, "offset_ms": 0.1, "source": "client", "target": "gateway", "kind": "request",
              "detail": "POST"}]  # fmt: skip
    invocation = _invocation(trace=trace, arguments={"operand1": 1, "operand2": 2}, worker_log="hello")
    response = client.get(f"/invocations/{invocation.id}.json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="invocation-{invocation.id}.json"'
    document = json.loads(response.content)
    assert document["id"] == str(invocation.id) and document["trace"] == trace and document["worker_log"] == "hello"


def test_re_run_shows_the_earlier_arguments_in_the_form_and_may_run_them_at_once(client):
    earlier = _invocation(plugin_name="slow_count", arguments={"steps": 3, "delay_ms": 25})
    page = client.get(f"/plugins/slow_count?from={earlier.id}").content.decode()
    assert 'id="field-steps" name="steps"' in page and 'value="3"' in page and 'value="25"' in page
    assert 'data-testid="rerun-source"' in page and "data-autorun" not in page
    assert "data-autorun" in client.get(f"/plugins/slow_count?from={earlier.id}&autorun=1").content.decode()
    assert client.get(f"/plugins/slow_count?from={uuid.uuid4()}").status_code == 404
    assert client.get("/plugins/slow_count?from=nope").status_code == 404


def test_unknown_pages_are_a_styled_404_and_the_api_stays_json(client):
    page = client.get("/no/such/page")
    html = page.content.decode()
    assert page.status_code == 404 and 'data-testid="not-found"' in html and "dashboard.css" in html
    assert "/no/such/page" in html and 'href="/live"' in html
    api = client.get("/api/v1/no/such/thing")
    assert api.status_code == 404 and api["Content-Type"].startswith("application/json")
    assert api.json()["error"]["code"] == "not_found"


def test_the_live_page_lists_runs_and_shows_a_curl_with_the_key_placeholder(client):
    running = _invocation(status=Status.RUNNING, http_status=None, total_ms=None, plugin_name="slow_count")
    html = client.get("/live").content.decode()
    assert f'data-invocation="{running.id}"' in html and 'ws-connect="/ws/live/"' in html
    assert "Authorization: Bearer $API_KEY" in html and "/api/v1/calculate/subtract" in html
    assert "var/dev_api_key" in html
