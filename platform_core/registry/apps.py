from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "platform_core.registry"
    label = "registry"
    verbose_name = "Plugin registry"
