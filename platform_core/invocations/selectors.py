"""Reads of the invocation history."""

from __future__ import annotations

from django.db.models import QuerySet

from platform_core.invocations.models import Invocation


def invocations_query(
    *, plugin: str | None = None, status: str | None = None, tenant: str | None = None, worker: str | None = None
) -> QuerySet[Invocation]:
    query = Invocation.objects.defer("trace", "worker_log")
    if plugin:
        query = query.filter(plugin_name=plugin)
    if status:
        query = query.filter(status=status)
    if tenant:
        query = query.filter(tenant_id=tenant)
    if worker:
        query = query.filter(worker_id=worker)
    return query.order_by("-created_at")


def invocation_with_trace(*, invocation_id: str) -> Invocation | None:
    """One invocation, its ``trace`` document included."""
    return Invocation.objects.filter(id=invocation_id).first()
