from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from platform_core.gateway import views as gateway_views

urlpatterns = [
    path("api/v1/", include("platform_core.gateway.urls")),
    path("admin/", admin.site.urls),
    path("metrics", gateway_views.metrics, name="metrics"),
    path("accounts/login/", auth_views.LoginView.as_view(template_name="dashboard/login.html"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("dashboard.urls")),
]
