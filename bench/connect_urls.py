"""The project's URLs plus two unprotected twins of the identity-proof page, for bench/connect_gunicorn.py.

``/bench/unprotected/`` is the real page minus authentication: the same view body (the decorator
unwrapped), the same usage count (one upsert) and framing header, with ``request.connect`` set from a
tenant read once per worker. Comparing it with ``/connect/identity-proof/`` therefore measures exactly
what JWT protection costs: token parse, tenant from the cache, HS256 check, claims. ``/bench/bare/``
renders the page's template alone (no usage count), in full through the template engine; ``/bench/trivial/``
returns a constant, the floor of any Django view on this server.
"""

import inspect

from django.http import HttpResponse
from django.shortcuts import render
from django.urls import include, path

from dsr_requests.views import account_proof
from registrations import jwt, services
from registrations.models import Registration

SITE_URL = "https://acme.atlassian.net/wiki"
ACCOUNT_ID = "557058:0e50fccb-239d-4991-a5db-dc850ba3f236"

_page_body = inspect.unwrap(account_proof)
_tenant = []


def trivial(request):
    """The floor: a Django view that returns a constant, through the same middleware and server."""
    return HttpResponse(b"ok", content_type="text/plain")


def bare(request):
    """The protected view's template with its GET context, nothing else."""
    return render(
        request, "dsr_requests/account_proof.html", {"site_url": SITE_URL, "account_id": ACCOUNT_ID}
    )


def unprotected(request):
    """Everything the protected page does except authenticate."""
    if not _tenant:
        _tenant.append(Registration.objects.filter(base_url=SITE_URL).latest("installed_at"))
    request.connect = jwt.ConnectContext(tenant=_tenant[0], account_id=ACCOUNT_ID, claims={})
    with services.usage_counted(module="bench-unprotected"):
        return jwt._frame_for_tenant(request, _page_body(request))


urlpatterns = [
    path("bench/trivial/", trivial),
    path("bench/bare/", bare),
    path("bench/unprotected/", unprotected),
    path("", include("artemis_portal.urls")),
]
