from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.calculator, name="calculator"),
    path("run", views.calculator_run, name="calculator-run"),
    path("live", views.live, name="live"),
    path("workers", views.workers, name="workers"),
    path("invocations", views.history, name="history"),
    path("invocations/<uuid:invocation_id>", views.invocation, name="invocation"),
    path("timings", views.timings, name="timings"),
    path("plugins", views.plugins, name="plugins"),
    path("plugins/<slug:name>", views.plugin, name="plugin"),
    path("plugins/<slug:name>/run", views.plugin_run, name="plugin-run"),
    # Browsers ask for it on every page, the admin's included.
    path("favicon.ico", RedirectView.as_view(url=static("dashboard/favicon.svg"), permanent=True)),
]
