"""Who is calling: the API key in ``Authorization: Bearer ...`` decides the caller's tenant and user.

The PPP context ids (tenant, user, session, request) come from here, never from the request body.
With ``API_REQUIRE_KEY=0`` (local experiments only) requests without a key act as tenant
``default``.
"""

from __future__ import annotations

import uuid

from asgiref.sync import sync_to_async
from django.conf import settings

from platform_core.tenancy import services as keys
from platform_core.tenancy.callers import Caller, TenantLimits

ANONYMOUS = keys.KeyOwner("default", "anonymous", "", False, TenantLimits())


def _token(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _caller(owner: keys.KeyOwner, request_id: str, trace_context: tuple[str, str] = ("", "")) -> Caller:
    return Caller(
        tenant_id=owner.tenant,
        user_id=owner.user,
        session_id=owner.key_prefix,
        request_id=request_id[:100] or str(uuid.uuid4()),
        is_staff=owner.is_staff,
        limits=owner.limits,
        traceparent=trace_context[0],
        tracestate=trace_context[1],
    )


def caller_sync(authorization: str, request_id: str = "") -> Caller | None:
    """The caller an ``Authorization`` header stands for, or None (answer 401)."""
    token = _token(authorization)
    if token is None:
        return None if settings.PLATFORM_API_REQUIRE_KEY else _caller(ANONYMOUS, request_id)
    owner = keys.api_key_owner(token)
    return None if owner is None else _caller(owner, request_id)


async def caller_async(
    authorization: str, request_id: str = "", trace_context: tuple[str, str] = ("", "")
) -> Caller | None:
    """``caller_sync`` for async code: from the key cache without a thread hop when it can.
    ``trace_context``: the request's ``traceparent`` and ``tracestate`` headers."""
    token = _token(authorization)
    if token is None:
        return None if settings.PLATFORM_API_REQUIRE_KEY else _caller(ANONYMOUS, request_id, trace_context)
    owner = keys.api_key_owner_cached(token)
    if owner is keys.NOT_CACHED:
        owner = await sync_to_async(keys.api_key_owner)(token)
    return None if owner is None else _caller(owner, request_id, trace_context)  # type: ignore[arg-type]
