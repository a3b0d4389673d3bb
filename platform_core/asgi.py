"""ASGI entry point: HTTP (REST API, dashboard, admin) and WebSockets, served by daphne."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_core.settings")

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

# Django is set up before anything imports models (the consumers do).
django_application = get_asgi_application()

from dashboard.routing import websocket_urlpatterns  # noqa: E402
from platform_core.gateway.background import Lifespan  # noqa: E402
from platform_core.gateway.invoke_edge import InvocationEdge  # noqa: E402

application = ProtocolTypeRouter(
    {
        # The invocation endpoints and /static/ are answered here; everything else by Django.
        "http": InvocationEdge(ASGIStaticFilesHandler(django_application)),
        # The dashboard's live views; only pages served from an allowed host may connect.
        # (channels' stubs want URL patterns of ASGI apps; django-stubs type path() for views.)
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),  # type: ignore[arg-type]
        # uvicorn: the gateway's background tasks (async queue, cancel requests) start with it.
        "lifespan": Lifespan(),
    }
)
