from django.apps import AppConfig


class InvocationsConfig(AppConfig):
    name = "platform_core.invocations"
    label = "invocations"
    verbose_name = "Invocation history"
