from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("api/v1/", include("platform_core.gateway.urls")),
    path("admin/", admin.site.urls),
    path("", include("dashboard.urls")),
]
