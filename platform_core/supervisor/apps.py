from django.apps import AppConfig


class SupervisorConfig(AppConfig):
    name = "platform_core.supervisor"
    label = "supervisor"
    verbose_name = "Runtime supervisor"
