"""API keys: creating them, and resolving a presented key to a caller (cached, constant-time)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from platform_core.db import reconnecting
from platform_core.tenancy.models import ApiKey, Tenant


@dataclass(frozen=True)
class KeyOwner:
    tenant: str
    user: str
    key_prefix: str
    is_staff: bool
    rate_per_s: float
    burst: int
    max_concurrent: int


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def api_key_create(*, tenant_slug: str, name: str, is_staff: bool = False, user=None) -> tuple[ApiKey, str]:
    """Create a key for ``tenant_slug`` (creating the tenant if needed); (row, the key shown once)."""
    tenant, _ = Tenant.objects.get_or_create(slug=tenant_slug, defaults={"name": tenant_slug})
    prefix = secrets.token_hex(4)
    key = f"pp_{prefix}_{secrets.token_urlsafe(24)}"
    row = ApiKey.objects.create(
        tenant=tenant, name=name, prefix=prefix, key_hash=_hash(key), is_staff=is_staff, user=user
    )
    return row, key


_cache: dict[str, tuple[float, KeyOwner | None, str]] = {}


def api_key_cache_clear() -> None:
    _cache.clear()


@reconnecting  # runs on the invocation edge's sync thread (platform_core/db.py)
def _load(prefix: str) -> tuple[KeyOwner | None, str]:
    row = ApiKey.objects.select_related("tenant", "user").filter(prefix=prefix, revoked=False).first()
    if row is None:
        return None, ""
    tenant = row.tenant
    owner = KeyOwner(
        tenant.slug,
        row.user.get_username() if row.user else f"key:{row.name}",
        prefix,
        row.is_staff,
        tenant.rate_per_s,
        tenant.burst,
        tenant.max_concurrent,
    )
    return owner, row.key_hash


NOT_CACHED = object()


def api_key_owner_cached(presented: str) -> KeyOwner | object | None:
    """Like ``api_key_owner`` from the cache alone (no database): ``NOT_CACHED`` when it would need one."""
    parts = presented.split("_")
    if len(parts) < 3 or parts[0] != "pp":
        return None
    hit = _cache.get(parts[1])
    if hit is None or hit[0] <= time.monotonic():
        return NOT_CACHED
    _, owner, key_hash = hit
    if owner is None or not hmac.compare_digest(key_hash, _hash(presented)):
        return None
    return owner


def api_key_owner(presented: str) -> KeyOwner | None:
    """Who ``presented`` (the bearer token) belongs to, or None. Revocations apply within the cache TTL."""
    parts = presented.split("_")
    if len(parts) < 3 or parts[0] != "pp":
        return None
    prefix = parts[1]
    now = time.monotonic()
    hit = _cache.get(prefix)
    if hit is None or hit[0] <= now:
        owner, key_hash = _load(prefix)
        if len(_cache) > 10_000:
            _cache.clear()
        hit = _cache[prefix] = (now + settings.PLATFORM_API_KEY_CACHE_TTL_S, owner, key_hash)
    _, owner, key_hash = hit
    if owner is None or not hmac.compare_digest(key_hash, _hash(presented)):
        return None
    return owner


@dataclass(frozen=True)
class Viewer:
    """A logged-in dashboard user: the tenant they act for, and whether they see every tenant."""

    tenant: str
    user: str
    is_staff: bool

    def may_see(self, tenant: str) -> bool:
        return self.is_staff or tenant == self.tenant


def viewer_for(user) -> Viewer | None:
    """The dashboard viewer of ``user`` (None when not logged in). Users without a tenant act for
    tenant ``default``; staff users see every tenant."""
    if user is None or not user.is_authenticated:
        return None
    from platform_core.tenancy.models import TenantMember

    member = TenantMember.objects.select_related("tenant").filter(user=user).first()
    return Viewer(member.tenant.slug if member else "default", user.get_username(), bool(user.is_staff))
