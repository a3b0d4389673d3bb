"""Who is calling: the identity every invocation carries, whichever edge it came through.

An API key (``gateway.auth``), a logged-in dashboard user (``dashboard.services``), an MCP
client or a queued invocation all become one ``Caller``: the ids carried to the worker in the
PPP context, whether it sees every tenant, and the tenant's admission limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TenantLimits:
    """A tenant's admission quota (``Tenant`` in the admin; see docs/SECURITY.md)."""

    rate_per_s: float = 1000.0
    burst: int = 2000
    max_concurrent: int = 128


@dataclass(frozen=True)
class Caller:
    """Who asks: ids carried to the worker in the PPP context, never taken from the request body."""

    tenant_id: str = "default"
    user_id: str = "anonymous"
    session_id: str = ""
    request_id: str = ""
    # Sees every tenant's invocations (staff keys, staff users).
    is_staff: bool = False
    limits: TenantLimits = field(default_factory=TenantLimits)
    # The caller's W3C Trace Context headers, as sent (validated by observability.tracing).
    traceparent: str = ""
    tracestate: str = ""
