"""Connect URLs: descriptor, lifecycle callbacks and the app's JWT-protected pages."""

from django.urls import path

from dsr_requests import views as dsr_views
from registrations import forge_views, views

app_name = "registrations"

urlpatterns = [
    path("atlassian-connect.json", views.descriptor, name="descriptor"),
    *(
        path(f"connect/{event}", views.lifecycle, {"event": event}, name=event)
        for event in ("installed", "uninstalled", "enabled", "disabled")
    ),
    path("forge/events/", forge_views.events, name="forge-events"),
    # The account proof belongs to the rights-request intake; its URL stays with the Connect pages.
    path("connect/identity-proof/", dsr_views.account_proof, name="identity-proof"),
]
