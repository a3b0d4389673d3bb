"""The dashboard's pages: thin views over ``services`` and ``selectors``.

A page renders its fragments in place; the same fragment alone answers an htmx request
(``request.htmx``), and the live consumers push it over the WebSocket.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from dashboard import selectors, services
from dashboard.compare import invocations_compared
from dashboard.curl import calculate_path, curl_command, invoke_path
from dashboard.forms import HistoryFilterForm, session_valid
from dashboard.live import LiveInvocation, LiveProgress, invocation_summary, run_entry, stored_live
from dashboard.schema_forms import FormField, arguments_from_post, fields_filled, form_fields
from dashboard.traces import invocation_timings, timing_segments, trace_rows
from dashboard.waterfall import waterfall
from dashboard.workers_relay import STATES, board_from_listing, state_counts
from platform_core.gateway import cancellation, runtime_client
from platform_core.gateway.serializers import invocation_json
from platform_core.invocations.models import Invocation, Status
from platform_core.registry.models import PluginSpec
from platform_core.registry.selectors import plugin_by_name
from platform_core.tenancy.services import Viewer


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _live_panel() -> dict[str, object]:
    """What a live panel starts with: nothing followed yet."""
    return {
        "live": LiveInvocation(),
        "progress": LiveProgress(),
        "rows": [],
        "waterfall": waterfall([], finished=False),
    }


def _base_url(request: HttpRequest) -> str:
    return f"{request.scheme}://{request.get_host()}"


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
    runs = await sync_to_async(selectors.runs_in_flight)(scope=_viewer(request).scope)
    context = {
        **_live_panel(),
        "runs": [run_entry(i) for i in runs],
        "curl": curl_command(
            base_url=_base_url(request), path=calculate_path("subtract"), arguments={"operand1": 10, "operand2": 5}
        ),
    }
    return render(request, "dashboard/live.html", context)


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


def _invocation_or_404(request: HttpRequest, invocation_id: uuid.UUID) -> Invocation:
    found = selectors.invocation_detail(invocation_id=str(invocation_id))
    if found is None or not _viewer(request).may_see(found.tenant_id):
        raise Http404("no such invocation")
    return found


@require_GET
def invocation(request: HttpRequest, invocation_id: uuid.UUID) -> HttpResponse:
    found = _invocation_or_404(request, invocation_id)
    running = found.status == Status.RUNNING
    previous = selectors.invocation_previous(invocation=found, scope=_viewer(request).scope)
    plugin = plugin_by_name(name=found.plugin_name)
    context = {
        **_live_panel(),
        **invocation_summary(found),
        "invocation_id_str": str(found.id),
        "rows": trace_rows(found.trace),
        "waterfall": waterfall(found.trace, finished=not running, failed=found.status != Status.SUCCEEDED),
        "running": running,
        "cancellable": found.status in (Status.RUNNING, Status.QUEUED),
        # A running invocation's panel starts as what is known of it (its arrows come by socket).
        "live": stored_live(found) if running else LiveInvocation(),
        "hint": f"The stored trace, {len(found.trace)} arrows, each with its time since the request.",
        "curl": curl_command(
            base_url=_base_url(request), path=invoke_path(found.plugin_name), arguments=found.arguments
        ),
        "rerun_url": f"{reverse('dashboard:plugin', args=[plugin.name])}?{urlencode({'from': found.id})}"
        if plugin is not None and found.arguments is not None
        else "",
        "compare_url": f"{reverse('dashboard:compare')}?{urlencode({'a': previous.id, 'b': found.id})}"
        if previous is not None
        else "",
    }
    return render(request, "dashboard/invocation.html", context)


@require_POST
async def invocation_cancel(request: HttpRequest, invocation_id: uuid.UUID) -> HttpResponse:
    """The Cancel button: a queued run never runs, a running one is cancelled on its worker
    (``cancellation.invocation_cancel``, as ``POST /api/v1/invocations/{id}/cancel``)."""
    found = await sync_to_async(_invocation_or_404)(request, invocation_id)
    await cancellation.invocation_cancel(invocation_id=str(found.id), status=found.status)
    return redirect("dashboard:invocation", invocation_id=found.id)


@require_GET
def invocation_download(request: HttpRequest, invocation_id: uuid.UUID) -> HttpResponse:
    """The invocation with its trace, as the API's ``GET /invocations/<id>`` answers it, to keep."""
    found = _invocation_or_404(request, invocation_id)
    response = JsonResponse(invocation_json(found, trace=True), json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="invocation-{found.id}.json"'
    return response


@require_GET
def compare(request: HttpRequest) -> HttpResponse:
    """Two invocations side by side: ``?a=<id>&b=<id>`` (or ``?ids=<id>&ids=<id>`` from the history)."""
    wanted = [request.GET.get("a", ""), request.GET.get("b", "")]
    if not all(wanted):
        wanted = request.GET.getlist("ids")
    if len(wanted) != 2:
        context = {"problem": "Choose two invocations to compare (tick two rows of the history)."}
        return render(request, "dashboard/compare.html", context, status=400)
    found = []
    for value in wanted:
        try:
            found.append(_invocation_or_404(request, uuid.UUID(value)))
        except ValueError:
            raise Http404("no such invocation") from None
    return render(request, "dashboard/compare.html", invocations_compared(found[0], found[1]))


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
    """``?from=<invocation id>``: the form shows that invocation's arguments (edit and run them
    again); with ``&autorun=1`` the page runs them as soon as its live view is subscribed."""
    spec = _plugin_or_404(name)
    fields = form_fields(spec.input_schema)
    source = None
    if origin := request.GET.get("from"):
        try:
            source = _invocation_or_404(request, uuid.UUID(origin))
        except ValueError:
            raise Http404("no such invocation") from None
        fields_filled(fields, source.arguments)
    context = {
        "plugin": spec,
        "fields": fields,
        "source": source,
        "autorun": source is not None and request.GET.get("autorun") == "1",
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
