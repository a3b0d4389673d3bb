"""API keys: creating them, and resolving a presented key to a caller (cached, constant-time)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from platform_core.db import reconnecting
from platform_core.tenancy.callers import Caller, TenantLimits
from platform_core.tenancy.models import ApiKey, Tenant, TenantMember


@dataclass(frozen=True)
class KeyOwner:
    tenant: str
    user: str
    key_prefix: str
    is_staff: bool
    limits: TenantLimits


def tenant_limits(tenant: Tenant) -> TenantLimits:
    return TenantLimits(rate_per_s=tenant.rate_per_s, burst=tenant.burst, max_concurrent=tenant.max_concurrent)


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


@transaction.atomic
def api_key_adopt(*, key: str, tenant_slug: str, name: str, is_staff: bool = False) -> ApiKey:
    """Make a key made elsewhere (``pp_<prefix>_<secret>``) valid here: its row, if this database
    has none (a development key kept in a file while the database changed)."""
    parts = key.split("_")
    if len(parts) < 3 or parts[0] != "pp":
        raise ValueError("not an API key (pp_<prefix>_<secret>)")
    tenant, _ = Tenant.objects.get_or_create(slug=tenant_slug, defaults={"name": tenant_slug})
    row, _ = ApiKey.objects.get_or_create(
        prefix=parts[1], defaults={"tenant": tenant, "name": name, "key_hash": _hash(key), "is_staff": is_staff}
    )
    return row


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
        tenant_limits(tenant),
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
    """A logged-in dashboard user: the tenant they act for (``""``: none), and whether they see
    every tenant."""

    tenant: str
    user: str
    is_staff: bool
    limits: TenantLimits = field(default_factory=TenantLimits)

    @property
    def has_tenant(self) -> bool:
        return bool(self.tenant)

    @property
    def scope(self) -> str | None:
        """The one tenant whose invocations this viewer sees ("" for none), or None: all (staff)."""
        return None if self.is_staff else self.tenant

    def may_see(self, tenant: str) -> bool:
        return self.is_staff or (self.has_tenant and tenant == self.tenant)

    def caller(self, *, session_id: str) -> Caller:
        """The caller of what this user runs from the dashboard (admitted like an API key's)."""
        return Caller(
            tenant_id=self.tenant,
            user_id=self.user[:100],
            session_id=session_id[:100],
            request_id=str(uuid.uuid4()),
            is_staff=self.is_staff,
            limits=self.limits,
        )


# Staff without a membership act for this tenant (they administer the platform).
STAFF_TENANT = "default"


def viewer_for(user: Any) -> Viewer | None:
    """The dashboard viewer of ``user`` (None when not logged in). A user acts for the tenant of
    their membership; staff users see every tenant and act for ``default`` without one; anyone
    else without a membership acts for no tenant: they see nothing and cannot run anything."""
    if user is None or not user.is_authenticated:
        return None
    member = TenantMember.objects.select_related("tenant").filter(user=user).first()
    if member is not None:
        return Viewer(member.tenant.slug, user.get_username(), bool(user.is_staff), tenant_limits(member.tenant))
    if user.is_staff:
        tenant = Tenant.objects.filter(slug=STAFF_TENANT).first()
        return Viewer(STAFF_TENANT, user.get_username(), True, tenant_limits(tenant) if tenant else TenantLimits())
    return Viewer("", user.get_username(), False)
