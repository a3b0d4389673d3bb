from typing import Any, cast

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import URLPattern, path

from dashboard import consumers


def _websocket(route: str, consumer: type[AsyncWebsocketConsumer]) -> URLPattern:
    # Channels routes ASGI applications with Django's path(); django-stubs type it for views.
    return path(route, cast(Any, consumer.as_asgi()))


websocket_urlpatterns = [
    _websocket("ws/live/", consumers.InvocationLiveConsumer),
    _websocket("ws/live/<slug:session>/", consumers.InvocationLiveConsumer),
    _websocket("ws/invocations/<uuid:invocation_id>/", consumers.InvocationLiveConsumer),
    _websocket("ws/workers/", consumers.WorkersConsumer),
]
