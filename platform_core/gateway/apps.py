from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "platform_core.gateway"
    label = "gateway"
    verbose_name = "Gateway"
