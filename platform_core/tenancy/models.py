"""Who may call the API: tenants, and the API keys that act for them."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Tenant(models.Model):
    slug = models.SlugField(max_length=100, unique=True, help_text="Tenant id carried to workers in the PPP context.")
    name = models.CharField(max_length=200, blank=True)
    # Admission limits, per gateway process (see docs/SECURITY.md).
    rate_per_s = models.FloatField(default=1000.0, help_text="Sustained invocations per second.")
    burst = models.PositiveIntegerField(default=2000, help_text="Invocations allowed in a burst above the rate.")
    max_concurrent = models.PositiveIntegerField(default=128, help_text="Invocations running at once.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class ApiKey(models.Model):
    """An API key: ``pp_<prefix>_<secret>``. Only a SHA-256 of the whole key is stored.

    The keys are 190-bit random strings, so a fast hash is enough (no password stretching needed).
    """

    tenant = models.ForeignKey(Tenant, related_name="api_keys", on_delete=models.CASCADE)
    name = models.CharField(max_length=100, help_text="What uses it, e.g. 'billing service'.")
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    is_staff = models.BooleanField(default=False, help_text="Sees every tenant's invocations.")
    revoked = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.tenant}: {self.name} (pp_{self.prefix}_…)"


class TenantMember(models.Model):
    """A dashboard user's tenant: what they run is that tenant's, and they see only its history."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, related_name="tenant_member", on_delete=models.CASCADE)
    tenant = models.ForeignKey(Tenant, related_name="members", on_delete=models.CASCADE)

    def __str__(self) -> str:
        return f"{self.user} → {self.tenant}"
