from django.contrib import admin
from django.urls import reverse

from platform_core.invocations.models import Invocation, InvocationEvent


class InvocationEventInline(admin.TabularInline):
    model = InvocationEvent
    fields = ["seq", "phase", "offset_ms", "source", "target", "kind", "detail"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["seq"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Invocation)
class InvocationAdmin(admin.ModelAdmin):
    list_display = ["created_at", "plugin_name", "status", "http_status", "tenant_id", "worker_id", "total_ms"]
    list_filter = ["status", "plugin_name", "runtime", "backend", "tenant_id"]
    search_fields = ["id", "plugin_name", "worker_id", "request_id", "error_message"]
    date_hierarchy = "created_at"
    inlines = [InvocationEventInline]

    def get_readonly_fields(self, request, obj=None):
        # History is a record: nothing in it is edited by hand.
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def view_on_site(self, obj: Invocation) -> str:
        """The "View on site" button opens the dashboard's page: the trace drawn as a sequence diagram."""
        return reverse("dashboard:invocation", args=[obj.pk])
