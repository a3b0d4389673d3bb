from django.urls import path, re_path

from platform_core.gateway import views

urlpatterns = [
    path("calculate/<slug:operation>", views.calculate, name="api-calculate"),
    path("plugins", views.plugins, name="api-plugins"),
    path("plugins/<slug:name>", views.plugin_detail, name="api-plugin"),
    path("plugins/<slug:name>/invoke", views.plugin_invoke, name="api-plugin-invoke"),
    path("invocations", views.invocations, name="api-invocations"),
    path("invocations/<uuid:invocation_id>", views.invocation_detail, name="api-invocation"),
    path("workers", views.workers, name="api-workers"),
    path("health", views.health, name="api-health"),
    path("openapi.json", views.openapi, name="api-openapi"),
    re_path(r"^.*$", views.not_found),
]
