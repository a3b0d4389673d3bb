"""ASGI entry point: HTTP (REST API, dashboard, admin) and WebSockets, served by daphne."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_core.settings")

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.asgi import get_asgi_application

# Django is set up before anything imports models (the consumers do).
django_application = get_asgi_application()

from dashboard.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        # The dashboard's live views; only pages served from an allowed host may connect.
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
