"""What the dashboard does: run a plugin through the gateway's execution service.

The dashboard is one more client of ``invocation_execute`` (the service behind the REST API),
so an invocation started from the browser is validated, traced, recorded and answered exactly
like one from ``curl``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from dashboard.schema_forms import errors_by_field
from dashboard.traces import timing_segments
from platform_core.gateway.execution import Outcome
from platform_core.gateway.service import invocation_submit
from platform_core.tenancy.services import Viewer


@dataclass
class RunResult:
    """An outcome as the result panel shows it."""

    invocation_id: str
    http_status: int
    ok: bool
    result: str = ""
    worker_id: str = ""
    error_code: str = ""
    error_message: str = ""
    field_errors: dict[str, str] = field(default_factory=dict)
    general_errors: list[str] = field(default_factory=list)
    timings: dict[str, float | None] = field(default_factory=dict)
    segments: list[dict[str, Any]] = field(default_factory=list)


def run_result(outcome: Outcome, *, field_names: list[str], plugin_field: str = "") -> RunResult:
    """``plugin_field``: the field that chose the plugin, where an unknown plugin is reported."""
    run = RunResult(
        invocation_id=outcome.invocation_id,
        http_status=outcome.http_status,
        ok=outcome.error is None,
        worker_id=outcome.worker_id,
        timings=dict(outcome.timings_ms),
        segments=timing_segments(outcome.timings_ms),
    )
    if outcome.error is None:
        run.result = json.dumps(outcome.result, indent=2, sort_keys=True)
        return run
    run.error_code, run.error_message = outcome.error.code, outcome.error.message
    details = outcome.error.details if isinstance(outcome.error.details, list) else None
    run.field_errors, run.general_errors = errors_by_field(details, field_names)
    if plugin_field and outcome.error.code == "unknown_plugin":
        run.field_errors[plugin_field] = outcome.error.message
    return run


class NoTenant(Exception):
    """The user belongs to no tenant: they can run nothing (an administrator adds a membership)."""


async def plugin_run(*, name: str, arguments: Any, session_id: str, viewer: Viewer, path: str) -> Outcome:
    """Run plugin ``name`` (name or operation alias) as the logged-in user, for their tenant.

    Through the gateway's one way in (``invocation_submit``): admitted against the tenant's
    quota, shielded, recorded and traced exactly like a call of the REST API. ``session_id`` is
    the browser tab's: its live view follows the invocations that carry it.
    """
    if not viewer.has_tenant:
        raise NoTenant(NO_TENANT_MESSAGE)
    return await invocation_submit(
        name=name,
        body=json.dumps(arguments).encode(),
        caller=viewer.caller(session_id=session_id),
        origin=f"POST {path}",
    )


NO_TENANT_MESSAGE = (
    "your account belongs to no tenant, so it can neither run plugins nor see invocations; "
    "an administrator adds it to a tenant (admin → Tenant members)"
)


def session_new() -> str:
    """A fresh id for one dashboard tab (the PPP context's session id of what it runs)."""
    return f"dash-{uuid.uuid4().hex}"
