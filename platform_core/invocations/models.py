"""Invocation history: every call of a plugin, failed or not, with its trace."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class Status(models.TextChoices):
    QUEUED = "queued", "Queued (async, not started yet)"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    REJECTED = "rejected", "Rejected (bad request)"
    FAILED = "failed", "Failed (plugin or worker)"
    TIMEOUT = "timeout", "Timed out"
    UNAVAILABLE = "unavailable", "Unavailable (no capacity or supervisor down)"
    THROTTLED = "throttled", "Throttled (over the tenant's quota)"
    ERROR = "error", "Platform error"
    INTERRUPTED = "interrupted", "Interrupted (gateway stopped)"
    CANCELLED = "cancelled", "Cancelled (on request)"


FINAL_STATUSES = {s for s in Status if s not in (Status.RUNNING, Status.QUEUED)}


class Invocation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No database constraint: the history is written in batches without looking the plugin up
    # again; one deleted while a gateway still cached it leaves a dangling id, and its name.
    plugin = models.ForeignKey(
        "registry.PluginSpec", null=True, blank=True, on_delete=models.SET_NULL, db_constraint=False
    )
    # Kept even when the plugin is unknown or later deleted.
    plugin_name = models.CharField(max_length=100, db_index=True)
    runtime = models.CharField(max_length=20, blank=True)
    backend = models.CharField(max_length=20, blank=True)
    tenant_id = models.CharField(max_length=100, blank=True, db_index=True)
    user_id = models.CharField(max_length=100, blank=True)
    session_id = models.CharField(max_length=100, blank=True)
    request_id = models.CharField(max_length=100, blank=True)
    arguments = models.JSONField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING, db_index=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    worker_id = models.CharField(max_length=50, blank=True)
    worker_warm = models.BooleanField(null=True, blank=True)
    # Phase timings in milliseconds, derived from the trace (see invocations.timings).
    allocation_ms = models.FloatField(null=True, blank=True)
    init_ms = models.FloatField(null=True, blank=True)
    execution_ms = models.FloatField(null=True, blank=True)
    release_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)
    # What the worker logged (PPP Log messages, then its stdout/stderr), bounded.
    worker_log = models.TextField(blank=True)
    worker_log_truncated = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The gateway instance that ran it: a gateway that restarts marks what it left running as
    # interrupted, and only that (other gateway processes may still be running theirs).
    gateway_instance = models.CharField(max_length=200, blank=True)
    # The sequence diagram: one document, written with the final state in one statement.
    # Each event: {"seq", "phase", "offset_ms", "source", "target", "kind", "detail"}
    # (vocabulary.EventKind; offset in ms since the request arrived).
    trace = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["plugin_name", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.plugin_name} {self.status} ({self.id})"


class QueuedInvocation(models.Model):
    """An async invocation (``POST /plugins/{name}/invocations``) waiting for a gateway to run it.

    The durable queue (``gateway.invocation_queue``): a gateway process claims a row (``FOR
    UPDATE SKIP LOCKED`` on PostgreSQL, a conditional delete on SQLite), deleting it and marking
    the invocation running in one transaction, and runs it through the one service every
    invocation goes through. One whose tenant is over its quota when claimed goes back, not
    claimed again before ``available_at``.
    """

    invocation = models.OneToOneField(Invocation, primary_key=True, on_delete=models.CASCADE, db_constraint=False)
    name = models.CharField(max_length=100)
    body = models.BinaryField()
    origin = models.CharField(max_length=300)
    # The caller, as the key resolved it when the invocation was accepted (callers.Caller's fields).
    caller = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Not claimed before then: held back while its tenant was over its quota.
    available_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["available_at", "created_at"]

    def __str__(self) -> str:
        return f"queued {self.name} ({self.invocation_id})"


class CancelRequest(models.Model):
    """Someone asked to cancel a running invocation; the gateway process that runs it acts on it."""

    invocation_id = models.UUIDField(primary_key=True)
    requested_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"cancel {self.invocation_id}"


class IdempotencyKey(models.Model):
    """An ``Idempotency-Key`` a tenant sent with an invocation (kept 24 h)."""

    tenant_id = models.CharField(max_length=100)
    key = models.CharField(max_length=255)
    # SHA-256 of the route and the body: the same key with another body is refused.
    fingerprint = models.CharField(max_length=64)
    invocation_id = models.UUIDField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant_id", "key"], name="idempotency_key_per_tenant")]

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.key} → {self.invocation_id}"
