"""``Idempotency-Key`` on the invoking POSTs: the same key and request from the same tenant
within 24 hours gets the first invocation's outcome (or waits for it while it runs) instead of
running it again; the same key with another request is refused (422).

Stored (``IdempotencyKey``, unique per tenant and key), not cached in memory: every gateway
process, and a gateway that restarted, sees the keys of the others. The first request inserts
its key with the id its invocation will have; a retry finds the row and follows that id.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction
from django.utils import timezone

from platform_core.gateway import errors
from platform_core.invocations.models import FINAL_STATUSES, IdempotencyKey, Invocation

KEPT = timedelta(hours=24)
MAX_KEY_LENGTH = 255
# How long a retry waits for the first invocation's outcome before answering 409.
WAIT_S = 600.0


def fingerprint(*, route: str, body: bytes) -> str:
    """What makes two requests the same: the route (plugin, style) and the exact body."""
    return hashlib.sha256(route.encode() + b"\n" + body).hexdigest()


def _claim(*, tenant_id: str, key: str, fingerprint: str, invocation_id: str) -> str | None:
    expired = timezone.now() - KEPT
    if random.random() < 0.01:  # now and then, forget every expired key, not only this one
        IdempotencyKey.objects.filter(created_at__lt=expired).delete()
    IdempotencyKey.objects.filter(tenant_id=tenant_id, key=key, created_at__lt=expired).delete()
    try:
        with transaction.atomic():
            IdempotencyKey.objects.create(
                tenant_id=tenant_id, key=key, fingerprint=fingerprint, invocation_id=uuid.UUID(invocation_id)
            )
        return None
    except IntegrityError:
        first = IdempotencyKey.objects.get(tenant_id=tenant_id, key=key)
    if first.fingerprint != fingerprint:
        raise errors.IdempotencyMismatch(
            f"Idempotency-Key {key!r} was used with another request in the last 24 h; use a new key for a new request"
        )
    return str(first.invocation_id)


async def key_claim(*, tenant_id: str, key: str, fingerprint: str, invocation_id: str) -> str | None:
    """Record ``key`` for ``invocation_id``; or the id of the invocation that used it first (same
    request). ``IdempotencyMismatch``: used first with another request. ``InvalidInput``: not a key."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise errors.InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters")
    return await sync_to_async(_claim, thread_sensitive=False)(
        tenant_id=tenant_id, key=key, fingerprint=fingerprint, invocation_id=invocation_id
    )


def _finished(invocation_id: str) -> Invocation | None:
    found = Invocation.objects.filter(pk=invocation_id).first()
    return found if found is not None and found.status in FINAL_STATUSES else None


async def invocation_wait(*, invocation_id: str, timeout_s: float = WAIT_S, every_s: float = 0.1) -> Invocation | None:
    """The invocation once it has finished (polled from the database), or None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await sync_to_async(_finished, thread_sensitive=False)(invocation_id)
        if found is not None or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(every_s)
