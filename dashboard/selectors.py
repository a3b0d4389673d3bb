"""Reads for the dashboard's pages: history, timings, the plugin catalogue."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet

from dashboard.traces import TIMING_PHASES
from platform_core.invocations.models import Invocation, Status
from platform_core.invocations.selectors import invocation_with_trace, invocations_query
from platform_core.registry.models import PluginSpec
from platform_core.registry.selectors import plugin_by_name

HISTORY_PAGE_SIZE = 25
# How many recent successful invocations the timing medians are computed from.
TIMINGS_WINDOW = 5000


@dataclass(frozen=True)
class HistoryFilters:
    plugin: str = ""
    status: str = ""
    tenant: str = ""
    since: datetime | None = None
    until: datetime | None = None


def history_query(*, filters: HistoryFilters, scope: str | None) -> QuerySet[Invocation]:
    """``scope``: the one tenant the viewer may see, whatever the filter asks (None: every
    tenant, for staff)."""
    tenant = filters.tenant or None if scope is None else scope
    query = invocations_query(plugin=filters.plugin or None, status=filters.status or None)
    if tenant is not None:
        query = query.filter(tenant_id=tenant)
    if filters.since:
        query = query.filter(created_at__gte=filters.since)
    if filters.until:
        query = query.filter(created_at__lte=filters.until)
    return query


def history_page(*, filters: HistoryFilters, scope: str | None, page: str | int | None) -> Page:
    """One page of the history, newest first (a page number out of range gives the last page)."""
    return Paginator(history_query(filters=filters, scope=scope), HISTORY_PAGE_SIZE).get_page(page)


def history_choices(*, scope: str | None) -> dict[str, list[str]]:
    """Values the history can be filtered by: the registry's plugins (not whatever names clients
    asked for), and the tenants the viewer may see."""
    names = PluginSpec.objects.order_by().values_list("name", flat=True)
    if scope is None:
        tenants = sorted(
            Invocation.objects.exclude(tenant_id="").order_by().values_list("tenant_id", flat=True).distinct()
        )
    else:
        tenants = [scope] if scope else []
    return {"plugins": sorted(names), "tenants": tenants, "statuses": list(Status.values)}


def invocation_detail(*, invocation_id: str) -> Invocation | None:
    return invocation_with_trace(invocation_id=invocation_id)


@dataclass
class TimingRow:
    plugin: str
    runtime: str
    backend: str
    count: int
    medians: dict[str, float | None] = field(default_factory=dict)

    @property
    def speedup(self) -> float | None:
        """How many times faster than the seed's total for the same runtime."""
        seed, total = SEED_TOTALS.get(self.runtime), self.medians.get("total")
        return round(seed / total, 1) if seed and total else None


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def timing_medians(*, scope: str | None) -> list[TimingRow]:
    """Median phase timings per plugin and backend, over recent successful invocations (of the
    tenant ``scope``; None: every tenant)."""
    fields = ["plugin_name", "runtime", "backend", *(f"{p}_ms" for p in (*TIMING_PHASES, "total"))]
    rows = (
        Invocation.objects.filter(
            status=Status.SUCCEEDED, total_ms__isnull=False, **({"tenant_id": scope} if scope is not None else {})
        )
        .order_by("-created_at")
        .values(*fields)[:TIMINGS_WINDOW]
    )
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["plugin_name"], row["runtime"], row["backend"])].append(row)
    result = []
    for (plugin, runtime, backend), items in sorted(groups.items()):
        medians = {
            phase: _median([item[f"{phase}_ms"] for item in items if item[f"{phase}_ms"] is not None])
            for phase in (*TIMING_PHASES, "total")
        }
        result.append(TimingRow(plugin, runtime, backend, len(items), medians))
    return result


@dataclass(frozen=True)
class SeedTiming:
    phase: str
    java_ms: int
    python_ms: int
    ours: str  # the phase of ours it falls in
    details: str


# The seed's "Timing Analysis" table (ephemeral worker mode).
SEED_TIMINGS: list[SeedTiming] = [
    SeedTiming("Worker Spawn", 4000, 4000, "allocation", "Docker container creation + Spring/Python boot"),
    SeedTiming("DNS Propagation", 1000, 1000, "allocation", "Docker network DNS registration"),
    SeedTiming("gRPC Init", 20, 15, "init", "PPP initialization handshake"),
    SeedTiming("Execution", 80, 60, "execution", "Actual calculation + JSON serialization"),
    SeedTiming("Channel Close", 100, 100, "release", "Graceful gRPC shutdown"),
    SeedTiming("Container Stop", 500, 400, "release", "SIGTERM + container removal"),
]
SEED_TOTALS: dict[str, float] = {"java": 5700, "python": 5600}


def plugins_catalogue() -> list[PluginSpec]:
    return list(PluginSpec.objects.order_by("-enabled", "name"))


async def plugin_by_name_async(*, name: str) -> PluginSpec | None:
    return await sync_to_async(plugin_by_name)(name=name)


async def calculator_operations() -> list[PluginSpec]:
    """Enabled plugins with an operation alias (the seed's calculator), by alias."""
    return [p async for p in PluginSpec.objects.filter(enabled=True, operation__isnull=False).order_by("operation")]
