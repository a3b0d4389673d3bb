from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from platform_core.tenancy.models import ApiKey, Tenant, TenantMember
from platform_core.tenancy.services import api_key_create


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ["name", "prefix", "is_staff", "revoked", "created_at"]
    readonly_fields = ["name", "prefix", "created_at"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # keys are made with the action below, which shows the key once


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "rate_per_s", "burst", "max_concurrent", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [ApiKeyInline]
    actions = ["create_api_key"]

    @admin.action(description="Create an API key for the selected tenants")
    def create_api_key(self, request, queryset) -> None:
        for tenant in queryset:
            _, key = api_key_create(tenant_slug=tenant.slug, name=f"admin:{request.user.get_username()}")
            self.message_user(request, f"New key for {tenant.slug} (shown once): {key}", messages.WARNING)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["tenant", "name", "prefix", "is_staff", "revoked", "created_at"]
    list_filter = ["revoked", "is_staff", "tenant"]
    search_fields = ["name", "prefix", "tenant__slug"]
    readonly_fields = ["prefix", "key_hash", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False  # use the tenant action or `manage.py createapikey`: the key is shown once


class TenantMemberInline(admin.StackedInline):
    model = TenantMember
    can_delete = True
    verbose_name = "tenant (what this user runs and sees on the dashboard)"


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class PlatformUserAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, TenantMemberInline]
