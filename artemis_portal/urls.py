"""Root URLs: landing page, health check, admin, and each app's URLs."""

from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _

from artemis_portal import views

admin.site.site_header = _("Artemis privacy portal")
admin.site.site_title = _("Artemis privacy portal")
admin.site.index_title = _("Support staff")

# A database outage noticed outside a view is a 503, not a 500 (see DatabaseUnavailableMiddleware).
handler500 = "artemis_portal.views.server_error"

urlpatterns = [
    path("", views.LandingView.as_view(), name="landing"),
    path("healthz", views.healthz, name="healthz"),
    # The second-factor pages sit under the admin, before it, so its session rules cover them.
    path("admin/2fa/", include("security.urls")),
    path("admin/", admin.site.urls),
    # The Connect and Forge pages (dsr_requests) are the busiest paths: tried before the lifecycle
    # callbacks (no path is in both; Django tries patterns in order).
    path("", include("dsr_requests.urls")),
    path("", include("registrations.urls")),
]
