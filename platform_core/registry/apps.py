from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


def _clear_registry_cache(**kwargs) -> None:
    from platform_core.registry.selectors import registry_cache_clear

    registry_cache_clear()


class RegistryConfig(AppConfig):
    name = "platform_core.registry"
    label = "registry"
    verbose_name = "Plugin registry"

    def ready(self) -> None:
        from platform_core.registry.models import PluginSpec, Runtime

        # A cached plugin carries its runtime's recipe: an edit of either clears the cache.
        for model in (PluginSpec, Runtime):
            label = model._meta.model_name
            post_save.connect(_clear_registry_cache, sender=model, dispatch_uid=f"registry-cache-save-{label}")
            post_delete.connect(_clear_registry_cache, sender=model, dispatch_uid=f"registry-cache-delete-{label}")
