from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


def _clear_key_cache(**kwargs) -> None:
    from platform_core.tenancy.services import api_key_cache_clear

    api_key_cache_clear()


class TenancyConfig(AppConfig):
    name = "platform_core.tenancy"
    label = "tenancy"
    verbose_name = "Tenants and API keys"

    def ready(self) -> None:
        from platform_core.tenancy.models import ApiKey, Tenant

        for model in (ApiKey, Tenant):
            post_save.connect(_clear_key_cache, sender=model, dispatch_uid=f"key-cache-save-{model.__name__}")
            post_delete.connect(_clear_key_cache, sender=model, dispatch_uid=f"key-cache-delete-{model.__name__}")
