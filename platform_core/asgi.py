"""ASGI entry point: HTTP (REST API, dashboard, admin) and WebSockets, served by daphne."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_core.settings")

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

django_application = get_asgi_application()

application = ProtocolTypeRouter({"http": django_application})
