"""Connect URLs: descriptor and lifecycle callbacks (the JWT-protected pages are in their own apps' URLs)."""

from django.urls import path

from registrations import forge_views, views

app_name = "registrations"

urlpatterns = [
    path("atlassian-connect.json", views.descriptor, name="descriptor"),
    *(
        path(f"connect/{event}", views.lifecycle, {"event": event}, name=event)
        for event in ("installed", "uninstalled", "enabled", "disabled")
    ),
    path("forge/events/", forge_views.events, name="forge-events"),
]
