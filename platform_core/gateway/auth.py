"""Who is calling: the API key in ``Authorization: Bearer ...`` decides the caller's tenant and user.

The PPP context ids (tenant, user, session, request) come from here, never from the request body.
With ``API_REQUIRE_KEY=0`` (local experiments only) requests without a key act as tenant
``default``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

from platform_core.invocations.services import Caller
from platform_core.tenancy import services as keys

ANONYMOUS = keys.KeyOwner("default", "anonymous", "", False, 1000.0, 2000, 128)


@dataclass(frozen=True)
class AuthFailure:
    http_status: int
    body: dict
    headers: dict[str, str]


UNAUTHENTICATED = AuthFailure(
    401,
    {
        "error": {
            "code": "unauthenticated",
            "message": "send an API key: 'Authorization: Bearer pp_...' (manage.py createapikey)",
        }
    },
    {"WWW-Authenticate": 'Bearer realm="plugin-platform"'},
)


def _token(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _caller(owner: keys.KeyOwner, request_id: str) -> Caller:
    return Caller(
        tenant_id=owner.tenant,
        user_id=owner.user,
        session_id=owner.key_prefix,
        request_id=request_id[:100] or str(uuid.uuid4()),
        is_staff=owner.is_staff,
    )


def owner_sync(authorization: str) -> keys.KeyOwner | None:
    token = _token(authorization)
    if token is None:
        return None if settings.PLATFORM_API_REQUIRE_KEY else ANONYMOUS
    return keys.api_key_owner(token)


async def owner_async(authorization: str) -> keys.KeyOwner | None:
    token = _token(authorization)
    if token is None:
        return None if settings.PLATFORM_API_REQUIRE_KEY else ANONYMOUS
    cached = keys.api_key_owner_cached(token)
    if cached is not keys.NOT_CACHED:
        return cached
    return await sync_to_async(keys.api_key_owner)(token)


def caller_sync(authorization: str, request_id: str = "") -> Caller | None:
    owner = owner_sync(authorization)
    return None if owner is None else _caller(owner, request_id)


async def caller_async(authorization: str, request_id: str = "") -> tuple[Caller, keys.KeyOwner] | None:
    owner = await owner_async(authorization)
    return None if owner is None else (_caller(owner, request_id), owner)
