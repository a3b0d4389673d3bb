from django.contrib import admin

from platform_core.registry.models import PluginSpec, Runtime


@admin.register(Runtime)
class RuntimeAdmin(admin.ModelAdmin):
    """A runtime's command runs on the supervisors' hosts: only superusers may write one."""

    list_display = ["name", "command_line", "image", "limit_address_space", "updated_at"]
    search_fields = ["name", "description", "image"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "description"]}),
        ("Process backend", {"fields": ["command", "workdir", "env", "limit_address_space"]}),
        ("Docker backend", {"fields": ["image", "container_command"]}),
        ("Zygote (fork workers from a template process)", {"fields": ["zygote_command", "zygote_args"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="command")
    def command_line(self, runtime: Runtime) -> str:
        return " ".join(runtime.command or [])

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser


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
