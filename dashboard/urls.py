from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from dashboard import views
from dashboard.access import login_page

app_name = "dashboard"

# Every page needs a login (staff see every tenant; other users their own tenant's).
urlpatterns = [
    path("", login_page(views.calculator), name="calculator"),
    path("run", login_page(views.calculator_run), name="calculator-run"),
    path("live", login_page(views.live), name="live"),
    path("workers", login_page(views.workers), name="workers"),
    path("invocations", login_page(views.history), name="history"),
    path("invocations/compare", login_page(views.compare), name="compare"),
    path("invocations/<uuid:invocation_id>", login_page(views.invocation), name="invocation"),
    path("invocations/<uuid:invocation_id>/cancel", login_page(views.invocation_cancel), name="invocation-cancel"),
    path("invocations/<uuid:invocation_id>.json", login_page(views.invocation_download), name="invocation-json"),
    path("timings", login_page(views.timings), name="timings"),
    path("plugins", login_page(views.plugins), name="plugins"),
    path("plugins/<slug:name>", login_page(views.plugin), name="plugin"),
    path("plugins/<slug:name>/run", login_page(views.plugin_run), name="plugin-run"),
    # Browsers ask for it on every page, the admin's included.
    path("favicon.ico", RedirectView.as_view(url=static("dashboard/favicon.svg"), permanent=True)),
]
