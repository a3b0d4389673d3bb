from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from platform_core.gateway import views

# The API authenticates with API keys, never with cookies, so CSRF does not apply to it: and an
# undeclared method must be a JSON 405, not the CSRF middleware's 403.
urlpatterns = [
    path("calculate/<slug:operation>", csrf_exempt(views.calculate), name="api-calculate"),
    path("plugins", csrf_exempt(views.plugins), name="api-plugins"),
    path("plugins/<slug:name>", csrf_exempt(views.plugin_detail), name="api-plugin"),
    path("plugins/<slug:name>/invoke", csrf_exempt(views.plugin_invoke), name="api-plugin-invoke"),
    path("invocations", csrf_exempt(views.invocations), name="api-invocations"),
    path("invocations/<uuid:invocation_id>", csrf_exempt(views.invocation_detail), name="api-invocation"),
    path("workers", csrf_exempt(views.workers), name="api-workers"),
    path("health", csrf_exempt(views.health), name="api-health"),
    path("openapi.json", csrf_exempt(views.openapi), name="api-openapi"),
    re_path(r"^.*$", csrf_exempt(views.not_found)),
]
