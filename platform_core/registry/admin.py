from django.contrib import admin

from platform_core.registry.models import PluginSpec


@admin.register(PluginSpec)
class PluginSpecAdmin(admin.ModelAdmin):
    list_display = ["name", "operation", "runtime", "backend", "mode", "timeout_s", "enabled"]
    list_filter = ["runtime", "backend", "mode", "enabled"]
    search_fields = ["name", "operation", "description", "entrypoint", "image"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "operation", "description", "enabled"]}),
        ("Where it runs", {"fields": ["runtime", "backend", "entrypoint", "image", "mode"]}),
        ("Limits", {"fields": ["timeout_s", "memory_mb", "cpus", "pids"]}),
        (
            "Pool (mode pooled)",
            {"fields": ["min_idle", "max_workers", "max_concurrency", "idle_timeout_s", "max_uses", "queue_timeout_s"]},
        ),
        ("Schemas", {"fields": ["input_schema", "output_schema"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]
