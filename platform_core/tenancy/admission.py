"""Per-tenant admission control: a rate (token bucket: ``rate_per_s`` sustained, ``burst`` at once)
and a concurrency quota (``max_concurrent`` invocations running).

Two implementations with one behaviour:

* ``LocalAdmission`` (no ``REDIS_URL``): counters in this gateway process. With N gateway
  processes a tenant's effective limits are N times the configured ones (docs/SECURITY.md).
* ``RedisAdmission`` (``REDIS_URL`` set): the counters live in Redis, shared by every gateway
  process and host, updated atomically by two small Lua scripts: GCRA (the generic cell rate
  algorithm, a token bucket kept as one timestamp) for the rate, and a sorted set of running
  invocations with expiry times for concurrency, so that a gateway that dies mid-invocation
  cannot hold its tenant's slots for longer than ``ADMISSION_SLOT_TTL_S``.

``enter`` admits one invocation or raises ``Refused`` (answered 429 with Retry-After); the
``Ticket`` it returns is given back with ``leave()`` when the invocation has ended.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings

from platform_core.tenancy.callers import Caller

log = logging.getLogger(__name__)


class Refused(Exception):
    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.code, self.message, self.retry_after = code, message, retry_after


class Ticket(Protocol):
    def leave(self) -> None:
        """The invocation has ended: its concurrency slot is free again."""


def _too_many(tenant: str, max_concurrent: int) -> Refused:
    return Refused(
        "too_many_concurrent", f"tenant {tenant} already runs {max_concurrent} invocations (its concurrency quota)", 1
    )


def _over_rate(tenant: str, rate_per_s: float, wait_s: float) -> Refused:
    return Refused(
        "rate_limited", f"tenant {tenant} is over its rate of {rate_per_s:g} invocations/s", max(1, math.ceil(wait_s))
    )


# --- in this process ----------------------------------------------------------------------


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class _LocalTicket:
    admission: LocalAdmission
    tenant: str
    left: bool = False

    def leave(self) -> None:
        if not self.left:
            self.left = True
            running = self.admission.running
            running[self.tenant] = max(0, running.get(self.tenant, 0) - 1)


class LocalAdmission:
    def __init__(self) -> None:
        self.buckets: dict[str, _Bucket] = {}
        self.running: dict[str, int] = {}

    async def enter(self, caller: Caller) -> Ticket:
        return self.enter_now(caller)

    def enter_now(self, caller: Caller) -> _LocalTicket:
        tenant, limits = caller.tenant_id, caller.limits
        now = time.monotonic()
        capacity = max(float(limits.burst), 1.0)
        bucket = self.buckets.get(tenant)
        if bucket is None:
            bucket = self.buckets[tenant] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * limits.rate_per_s)
        bucket.updated = now
        if self.running.get(tenant, 0) >= limits.max_concurrent:
            raise _too_many(tenant, limits.max_concurrent)
        if bucket.tokens < 1.0:
            wait = (1.0 - bucket.tokens) / limits.rate_per_s if limits.rate_per_s > 0 else 60.0
            raise _over_rate(tenant, limits.rate_per_s, wait)
        bucket.tokens -= 1.0
        self.running[tenant] = self.running.get(tenant, 0) + 1
        return _LocalTicket(self, tenant)


# --- in Redis, shared by every gateway ----------------------------------------------------

# KEYS: rate key, running key. ARGV: now (ms), emission interval (ms), burst tolerance (ms),
# max concurrent, member, slot expiry (ms since epoch), slot TTL (ms).
# Returns {0, ""} when admitted; {1, retry_ms} over the rate; {2, ""} at the concurrency quota.
_ENTER = """
local now, interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return {2, ''} end
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allowed_at = tat - tolerance
if allowed_at > now then return {1, tostring(allowed_at - now)} end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil(tat + interval - now))
redis.call('ZADD', KEYS[2], tonumber(ARGV[6]), ARGV[5])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[7]))
return {0, ''}
"""


@dataclass
class _RedisTicket:
    admission: RedisAdmission
    key: str
    member: str
    left: bool = False

    def leave(self) -> None:
        if not self.left:
            self.left = True
            client, _ = self.admission.connection()
            self.admission.background(client.zrem(self.key, self.member))


class RedisAdmission:
    def __init__(self, url: str, *, prefix: str, slot_ttl_s: float) -> None:
        self.url = url
        self.prefix = prefix
        self.slot_ttl_ms = int(slot_ttl_s * 1000)
        # redis.asyncio clients belong to the event loop they were made on.
        self._connections: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._pending: set[asyncio.Task[Any]] = set()

    def connection(self) -> tuple[Any, Any]:
        """(client, the registered enter script) of the running event loop."""
        loop = asyncio.get_running_loop()
        found = self._connections.get(loop)
        if found is None:
            import redis.asyncio as redis  # only with REDIS_URL

            client = redis.from_url(self.url)
            found = self._connections[loop] = (client, client.register_script(_ENTER))
        return found

    def background(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._pending.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("admission: giving back a concurrency slot failed: %s", task.exception())

    async def enter(self, caller: Caller) -> Ticket:
        tenant, limits = caller.tenant_id, caller.limits
        now_ms = int(time.time() * 1000)
        # GCRA: one invocation per interval; up to ``burst`` at once.
        interval = 1000.0 / limits.rate_per_s if limits.rate_per_s > 0 else 3_600_000.0
        tolerance = interval * max(limits.burst - 1, 0)
        running_key, member = f"{self.prefix}:admission:{tenant}:running", uuid.uuid4().hex
        _, script = self.connection()
        verdict, retry_ms = await script(
            keys=[f"{self.prefix}:admission:{tenant}:rate", running_key],
            args=[
                now_ms,
                interval,
                tolerance,
                limits.max_concurrent,
                member,
                now_ms + self.slot_ttl_ms,
                self.slot_ttl_ms,
            ],
        )
        if int(verdict) == 2:
            raise _too_many(tenant, limits.max_concurrent)
        if int(verdict) == 1:
            raise _over_rate(tenant, limits.rate_per_s, float(retry_ms) / 1000)
        return _RedisTicket(self, running_key, member)


class _Admission:
    """The process's admission, chosen from the settings on first use (tests may swap it)."""

    def __init__(self) -> None:
        self._impl: LocalAdmission | RedisAdmission | None = None

    @property
    def impl(self) -> LocalAdmission | RedisAdmission:
        if self._impl is None:
            url = settings.PLATFORM_ADMISSION_REDIS_URL
            self._impl = (
                RedisAdmission(
                    url, prefix=settings.PLATFORM_REDIS_PREFIX, slot_ttl_s=settings.PLATFORM_ADMISSION_SLOT_TTL_S
                )
                if url
                else LocalAdmission()
            )
        return self._impl

    def reset(self) -> None:
        self._impl = None

    async def enter(self, caller: Caller) -> Ticket:
        return await self.impl.enter(caller)


admission = _Admission()
