from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from platform_core.invocations.models import Invocation


@admin.register(Invocation)
class InvocationAdmin(admin.ModelAdmin):
    list_display = ["created_at", "plugin_name", "status", "http_status", "tenant_id", "worker_id", "total_ms"]
    list_filter = ["status", "plugin_name", "runtime", "backend", "tenant_id"]
    search_fields = ["id", "plugin_name", "worker_id", "request_id", "error_message"]
    date_hierarchy = "created_at"
    exclude = ["trace"]

    def get_readonly_fields(self, request, obj=None):
        # History is a record: nothing in it is edited by hand.
        return [field.name for field in self.model._meta.fields if field.name != "trace"] + ["trace_table"]

    @admin.display(description="Trace")
    def trace_table(self, obj: Invocation) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{:.1f}</td><td>{} → {}</td><td>{}</td><td>{}</td></tr>",
            (
                (e["seq"], e["phase"], e["offset_ms"], e["source"], e["target"], e["kind"], e["detail"])
                for e in obj.trace
            ),
        )
        return format_html(
            "<table><thead><tr><th>#</th><th>phase</th><th>ms</th><th>arrow</th><th>kind</th><th>detail</th>"
            "</tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def has_add_permission(self, request) -> bool:
        return False

    def view_on_site(self, obj: Invocation) -> str:
        """The "View on site" button opens the dashboard's page: the trace drawn as a sequence diagram."""
        return reverse("dashboard:invocation", args=[obj.pk])
