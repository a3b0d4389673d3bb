"""Per-tenant admission control in the gateway: a token bucket for the rate, a counter for concurrency.

Kept in each gateway process: with N gateway processes a tenant's effective limits are N times
these (documented in docs/SECURITY.md). Refusals are answered 429 with Retry-After.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


class Refused(Exception):
    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.code, self.message, self.retry_after = code, message, retry_after


@dataclass
class _Bucket:
    tokens: float
    updated: float


class Admission:
    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._running: dict[str, int] = {}

    def enter(self, tenant: str, *, rate_per_s: float, burst: int, max_concurrent: int) -> None:
        """Admit one invocation of ``tenant`` or raise ``Refused``; pair with ``leave``."""
        now = time.monotonic()
        capacity = max(float(burst), 1.0)
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate_per_s)
        bucket.updated = now
        if self._running.get(tenant, 0) >= max_concurrent:
            raise Refused(
                "too_many_concurrent",
                f"tenant {tenant} already runs {max_concurrent} invocations (its concurrency quota)",
                1,
            )
        if bucket.tokens < 1.0:
            wait = (1.0 - bucket.tokens) / rate_per_s if rate_per_s > 0 else 60.0
            raise Refused(
                "rate_limited",
                f"tenant {tenant} is over its rate of {rate_per_s:g} invocations/s",
                max(1, math.ceil(wait)),
            )
        bucket.tokens -= 1.0
        self._running[tenant] = self._running.get(tenant, 0) + 1

    def leave(self, tenant: str) -> None:
        self._running[tenant] = max(0, self._running.get(tenant, 0) - 1)


admission = Admission()
