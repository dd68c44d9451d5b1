"""Connect URLs: descriptor, lifecycle callbacks and the app's JWT-protected pages."""

from django.urls import path

from registrations import views

app_name = "registrations"

urlpatterns = [
    path("atlassian-connect.json", views.descriptor, name="descriptor"),
    *(
        path(f"connect/{event}", views.lifecycle, {"event": event}, name=event)
        for event in ("installed", "uninstalled", "enabled", "disabled")
    ),
    path("connect/identity-proof/", views.identity_proof, name="identity-proof"),
]
