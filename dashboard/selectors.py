"""Reads for the dashboard's pages: history, timings, the plugin catalogue."""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.core.paginator import Page, Paginator
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast

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
    # Words that must each match the id, request id, worker, plugin, user or session.
    text: str = ""
    worker: str = ""
    # Argument values: ``name=value`` (``a.b=1`` for nested ones; the value as JSON, else as
    # text) or words found anywhere in the arguments.
    arguments: str = ""


_ARGUMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)=(.*)$")


def _text_match(word: str) -> Q:
    """One word of the search box: an invocation id (with or without dashes, or its start), a
    request id, worker, plugin, user or session."""
    match = (
        Q(request_id__icontains=word)
        | Q(worker_id__icontains=word)
        | Q(plugin_name__icontains=word)
        | Q(user_id__icontains=word)
        | Q(session_id__icontains=word)
    )
    bare = word.replace("-", "").lower()
    if re.fullmatch(r"[0-9a-f]{4,32}", bare):
        # The canonical form with its dashes: PostgreSQL compares the uuid as such text; where
        # uuids are stored bare (SQLite), Django takes the dashes out of the pattern again.
        dashed = "-".join(part for part in (bare[:8], bare[8:12], bare[12:16], bare[16:20], bare[20:]) if part)
        match |= Q(id__startswith=dashed)
    return match


def _argument_match(query: QuerySet[Invocation], term: str) -> QuerySet[Invocation]:
    # "__" would read as a Django lookup (operand1__gt=1): such a term is only searched as text.
    if (found := _ARGUMENT.match(term)) and "__" not in found.group(1):
        path, raw = found.group(1).replace(".", "__"), found.group(2)
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        return query.filter(**{f"arguments__{path}": value})
    return query.annotate(arguments_text=Cast("arguments", TextField())).filter(arguments_text__icontains=term)


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
    if filters.worker:
        query = query.filter(worker_id__icontains=filters.worker)
    for word in filters.text.split():
        query = query.filter(_text_match(word))
    for term in filters.arguments.split():
        query = _argument_match(query, term)
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


def invocation_previous(*, invocation: Invocation, scope: str | None) -> Invocation | None:
    """The run of the same plugin just before ``invocation`` that the viewer may see."""
    query = Invocation.objects.filter(plugin_name=invocation.plugin_name, created_at__lt=invocation.created_at)
    if scope is not None:
        query = query.filter(tenant_id=scope)
    return query.only("id").order_by("-created_at").first()


# The Live page lists every running invocation and the latest finished ones.
LATEST_FINISHED = 5
RUNNING_AT_MOST = 50


def runs_in_flight(*, scope: str | None) -> list[Invocation]:
    """Running invocations (newest first) and the latest finished, for the Live page."""
    query = Invocation.objects.defer("trace", "worker_log", "arguments", "result")
    if scope is not None:
        query = query.filter(tenant_id=scope)
    running = list(query.filter(status=Status.RUNNING).order_by("-created_at")[:RUNNING_AT_MOST])
    finished = list(query.exclude(status=Status.RUNNING).order_by("-created_at")[:LATEST_FINISHED])
    return sorted(running + finished, key=lambda i: i.created_at, reverse=True)


@dataclass
class TimingRow:
    plugin: str
    runtime: str
    backend: str
    mode: str  # the plugin's mode (registry), "" when it is gone
    fresh: bool | None  # a fresh worker (started for the invocation) or a reused warm one
    count: int
    medians: dict[str, float | None] = field(default_factory=dict)

    @property
    def comparable(self) -> bool:
        """Only a fresh worker per invocation, the seed's ephemeral mode, is set beside its table."""
        return self.fresh is True and self.mode == "ephemeral"

    @property
    def speedup(self) -> float | None:
        """How many times faster than the seed's ephemeral total for the same runtime."""
        seed, total = SEED_TOTALS.get(self.runtime), self.medians.get("total")
        return round(seed / total, 1) if self.comparable and seed and total else None


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def timing_medians(*, scope: str | None) -> list[TimingRow]:
    """Median phase timings over recent successful invocations (of the tenant ``scope``; None:
    every tenant), per plugin, backend, mode and fresh or reused worker."""
    fields = ["plugin_name", "runtime", "backend", "plugin__mode", "worker_warm"]
    fields += [f"{p}_ms" for p in (*TIMING_PHASES, "total")]
    rows = (
        Invocation.objects.filter(
            status=Status.SUCCEEDED, total_ms__isnull=False, **({"tenant_id": scope} if scope is not None else {})
        )
        .order_by("-created_at")
        .values(*fields)[:TIMINGS_WINDOW]
    )
    groups: dict[tuple[str, str, str, str, bool | None], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        fresh = None if row["worker_warm"] is None else not row["worker_warm"]
        groups[(row["plugin_name"], row["runtime"], row["backend"], row["plugin__mode"] or "", fresh)].append(row)
    result = []
    for (plugin, runtime, backend, mode, fresh), items in sorted(groups.items(), key=lambda g: str(g[0])):
        medians = {
            phase: _median([item[f"{phase}_ms"] for item in items if item[f"{phase}_ms"] is not None])
            for phase in (*TIMING_PHASES, "total")
        }
        result.append(TimingRow(plugin, runtime, backend, mode, fresh, len(items), medians))
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
