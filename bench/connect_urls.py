"""The project's URLs plus two unprotected twins of the identity-proof page, for bench/connect_gunicorn.py.

``/bench/unprotected/`` is the page minus authentication: same template and context, and the same usage
count (one upsert) that every Connect page load records, so comparing it with the protected page
measures what JWT protection costs. ``/bench/bare/`` renders the template alone (no database at all), to
show the price of the usage count separately.
"""

from django.shortcuts import render
from django.urls import include, path

from registrations import services

SITE_URL = "https://acme.atlassian.net/wiki"
ACCOUNT_ID = "557058:0e50fccb-239d-4991-a5db-dc850ba3f236"


def bare(request):
    """The protected view's template and context, nothing else."""
    return render(
        request, "registrations/identity_proof.html", {"site_url": SITE_URL, "account_id": ACCOUNT_ID}
    )


def unprotected(request):
    """Everything the protected page does except authenticate: the usage count, then the same render."""
    services.record_usage(module="bench-unprotected")
    return bare(request)


urlpatterns = [
    path("bench/bare/", bare),
    path("bench/unprotected/", unprotected),
    path("", include("artemis_portal.urls")),
]
