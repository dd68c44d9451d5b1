"""The Connect app descriptor (``/atlassian-connect.json``), built from settings."""

from django.conf import settings
from django.urls import reverse

from registrations.jwt import app_relative_path_of

LIFECYCLE_EVENTS = ("installed", "uninstalled", "enabled", "disabled")

# The app's page in the Atlassian site's menu; the requester's status page names it in these words.
IDENTITY_PROOF_PAGE_NAME = "Privacy request: confirm your account"


def build_descriptor():
    """The descriptor Atlassian reads on install: identity, auth, lifecycle URLs, scopes, modules.

    ``apiMigrations`` opts in to signed installs (RS256 lifecycle tokens), ``context-qsh`` page tokens and
    GDPR personal-data reporting. URLs are relative to ``baseUrl``, as Connect expects.
    """
    return {
        "key": settings.CONNECT_APP_KEY,
        "name": settings.CONNECT_APP_NAME,
        "description": "Privacy and data-rights portal for Artemis Software's Confluence Cloud apps.",
        "vendor": {"name": settings.CONNECT_VENDOR_NAME, "url": settings.CONNECT_VENDOR_URL},
        "baseUrl": settings.APP_BASE_URL,
        "authentication": {"type": "jwt"},
        "lifecycle": {
            event: app_relative_path_of(reverse(f"registrations:{event}")) for event in LIFECYCLE_EVENTS
        },
        "scopes": [scope.upper() for scope in settings.CONNECT_SCOPES],
        "apiMigrations": {"signed-install": True, "context-qsh": True, "gdpr": True},
        "modules": {
            "generalPages": [
                {
                    "key": "identity-proof",
                    "name": {"value": IDENTITY_PROOF_PAGE_NAME},
                    "url": app_relative_path_of(reverse("dsr_requests:identity-proof")),
                }
            ]
        },
    }
