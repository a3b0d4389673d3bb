"""The dashboard's pages: thin views over ``services`` and ``selectors``.

A page renders its fragments in place; the same fragment alone answers an htmx request
(``request.htmx``), and the live consumers push it over the WebSocket.
"""

from __future__ import annotations

import json
import uuid

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from dashboard import selectors, services
from dashboard.forms import HistoryFilterForm, session_valid
from dashboard.live import LiveInvocation, LiveProgress
from dashboard.schema_forms import FormField, arguments_from_post, form_fields
from dashboard.traces import invocation_timings, timing_segments, trace_rows
from dashboard.workers_relay import STATES, board_from_listing, state_counts
from platform_core.gateway import runtime_client
from platform_core.invocations.models import Status
from platform_core.registry.models import PluginSpec
from platform_core.registry.selectors import plugin_by_name
from platform_core.tenancy.services import Viewer


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _live_panel() -> dict[str, object]:
    """What a live panel starts with: nothing followed yet."""
    return {"live": LiveInvocation(), "progress": LiveProgress(), "rows": []}


def _calculator_fields() -> list[FormField]:
    return [
        FormField("operand1", "number", "Operand 1", required=True, value="10"),
        FormField("operand2", "number", "Operand 2", required=True, value="5"),
    ]


def _viewer(request: HttpRequest) -> Viewer:
    """The logged-in user's tenant view (every dashboard URL is wrapped in ``access.login_page``)."""
    return request.viewer  # type: ignore[attr-defined]


def _session(request: HttpRequest) -> str:
    session = request.POST.get("session", "")
    return session if session_valid(session) else services.session_new()


async def _run(
    name: str,
    arguments: dict[str, object],
    *,
    session: str,
    viewer: Viewer,
    path: str,
    field_names: list[str],
    plugin_field: str = "",
) -> services.RunResult:
    try:
        outcome = await services.plugin_run(
            name=name, arguments=arguments, session_id=session, viewer=viewer, path=path
        )
    except services.NoTenant as exc:
        return services.RunResult(
            invocation_id="", http_status=403, ok=False, error_code="no_tenant", error_message=str(exc)
        )
    return services.run_result(outcome, field_names=field_names, plugin_field=plugin_field)


@require_GET
async def calculator(request: HtmxHttpRequest) -> HttpResponse:
    operations = await selectors.calculator_operations()
    context = {
        "operations": operations,
        "operation": "subtract" if any(p.operation == "subtract" for p in operations) else "",
        "fields": _calculator_fields(),
        "session": services.session_new(),
        **_live_panel(),
    }
    return render(request, "dashboard/calculator.html", context)


@require_POST
async def calculator_run(request: HtmxHttpRequest) -> HttpResponse:
    operation = request.POST.get("operation", "")
    fields = _calculator_fields()
    arguments, _ = arguments_from_post(fields, request.POST)
    session = _session(request)
    run = await _run(
        operation,
        arguments,
        session=session,
        viewer=_viewer(request),
        path="/run",
        field_names=["operation", *(f.name for f in fields)],
        plugin_field="operation",
    )
    for form_field in fields:
        form_field.error = run.field_errors.get(form_field.name, "")
    context = {
        "operations": await selectors.calculator_operations(),
        "operation": operation,
        "fields": fields,
        "run": run,
        "session": session,
        **_live_panel(),
    }
    template = "dashboard/partials/calculator_form.html" if request.htmx else "dashboard/calculator.html"
    return render(request, template, context)


@require_GET
async def live(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/live.html", _live_panel())


@require_GET
async def workers(request: HttpRequest) -> HttpResponse:
    scope = _viewer(request).scope
    boards = [board_from_listing(entry) for entry in await runtime_client.workers_list(scope=scope)]
    context = {"boards": boards, "states": state_counts(boards), "all_states": STATES}
    return render(request, "dashboard/workers.html", context)


@require_GET
def history(request: HtmxHttpRequest) -> HttpResponse:
    form = HistoryFilterForm(request.GET or None)
    filters = form.filters() if form.is_bound else selectors.HistoryFilters()
    scope = _viewer(request).scope  # a tenant's user sees only its tenant, whatever the filter says
    page = selectors.history_page(filters=filters, scope=scope, page=request.GET.get("page"))
    rows = [{"invocation": i, "segments": timing_segments(invocation_timings(i))} for i in page]
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form if form.is_bound else HistoryFilterForm(),
        "choices": selectors.history_choices(scope=scope),
        "page": page,
        "rows": rows,
        "query": query.urlencode(),
    }
    if request.htmx and not request.htmx.boosted:
        return render(request, "dashboard/partials/history_table.html", context)
    return render(request, "dashboard/history.html", context)


@require_GET
def invocation(request: HttpRequest, invocation_id: uuid.UUID) -> HttpResponse:
    found = selectors.invocation_detail(invocation_id=str(invocation_id))
    if found is None or not _viewer(request).may_see(found.tenant_id):
        raise Http404("no such invocation")
    timings = invocation_timings(found)
    context = {
        **_live_panel(),
        "invocation": found,
        "invocation_id_str": str(found.id),
        "rows": trace_rows(found.trace),
        "timings": timings,
        "segments": timing_segments(timings),
        "arguments": json.dumps(found.arguments, indent=2, sort_keys=True),
        "result": json.dumps(found.result, indent=2, sort_keys=True) if found.result is not None else "",
        "running": found.status == Status.RUNNING,
    }
    return render(request, "dashboard/invocation.html", context)


@require_GET
def timings(request: HttpRequest) -> HttpResponse:
    context = {
        "rows": selectors.timing_medians(scope=_viewer(request).scope),
        "window": selectors.TIMINGS_WINDOW,
        "seed": selectors.SEED_TIMINGS,
        "seed_totals": selectors.SEED_TOTALS,
    }
    return render(request, "dashboard/timings.html", context)


@require_GET
def plugins(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/plugins.html", {"plugins": selectors.plugins_catalogue()})


def _plugin_or_404(name: str) -> PluginSpec:
    plugin = plugin_by_name(name=name)
    if plugin is None:
        raise Http404("no such plugin")
    return plugin


@require_GET
def plugin(request: HttpRequest, name: str) -> HttpResponse:
    spec = _plugin_or_404(name)
    context = {
        "plugin": spec,
        "fields": form_fields(spec.input_schema),
        "session": services.session_new(),
        **_live_panel(),
        "input_schema": json.dumps(spec.input_schema, indent=2),
        "output_schema": json.dumps(spec.output_schema, indent=2),
    }
    return render(request, "dashboard/plugin.html", context)


@require_POST
async def plugin_run(request: HtmxHttpRequest, name: str) -> HttpResponse:
    spec = await selectors.plugin_by_name_async(name=name)
    if spec is None:
        raise Http404("no such plugin")
    fields = form_fields(spec.input_schema)
    arguments, problems = arguments_from_post(fields, request.POST)
    session = _session(request)
    run = None
    if not problems:
        run = await _run(
            spec.name,
            arguments,
            session=session,
            viewer=_viewer(request),
            path=f"/plugins/{spec.name}/run",
            field_names=[f.name for f in fields],
        )
        problems = run.field_errors
    for form_field in fields:
        form_field.error = problems.get(form_field.name, "")
    context = {
        "plugin": spec,
        "fields": fields,
        "run": run,
        "session": session,
        **_live_panel(),
        "input_schema": json.dumps(spec.input_schema, indent=2),
        "output_schema": json.dumps(spec.output_schema, indent=2),
    }
    template = "dashboard/partials/plugin_form.html" if request.htmx else "dashboard/plugin.html"
    return render(request, template, context)
