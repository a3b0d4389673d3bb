from django.urls import path

from dashboard import consumers

websocket_urlpatterns = [
    path("ws/live/", consumers.InvocationLiveConsumer.as_asgi()),
    path("ws/live/<slug:session>/", consumers.InvocationLiveConsumer.as_asgi()),
    path("ws/invocations/<uuid:invocation_id>/", consumers.InvocationLiveConsumer.as_asgi()),
    path("ws/workers/", consumers.WorkersConsumer.as_asgi()),
]
