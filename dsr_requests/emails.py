"""Requester emails: one template pair per event (``templates/emails/<event>.txt`` and ``.html``).

Rendered when queued, so what is sent is exactly what the request looked like at that moment, and the
sender needs no database access beyond the outbox row.
"""

from urllib.parse import urlencode

from django.conf import settings
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

SUBJECTS = {
    "received": _("Please confirm your email address for request %(reference)s"),
    "confirm_reminder": _("Reminder: please confirm your email address for request %(reference)s"),
    "confirmed": _("Request %(reference)s: your email address is confirmed"),
    "more_information": _("Request %(reference)s: we need more information from you"),
    "identity_verified": _("Request %(reference)s: your identity is verified"),
    "rejected": _("Request %(reference)s has been rejected"),
    "extended": _("Request %(reference)s: we need more time"),
    "completed": _("Request %(reference)s is complete"),
    "withdrawn": _("Request %(reference)s has been withdrawn"),
    "status_link": _("Request %(reference)s: your new status page link"),
    "export_ready": _("Request %(reference)s: your data is ready to download"),
    "download_code": _("Request %(reference)s: your download code"),
    "transfer_link": _("Request %(reference)s: personal data transferred to you"),
    "processing_answer": _("Request %(reference)s: how we process personal data"),
    "changed": _("Request %(reference)s: we corrected your data"),
    "erasure_receipt": _("Request %(reference)s: receipt for the erasure of your data"),
}


def absolute_url(viewname, *, query=None, **kwargs):
    """A link for an email, built from APP_BASE_URL (the request's own host is not trusted)."""
    url = settings.APP_BASE_URL.rstrip("/") + reverse(viewname, kwargs=kwargs)
    return f"{url}?{urlencode(query)}" if query else url


def render(event, rights_request, **context):
    """Return (subject, text body, HTML body) of one requester email."""
    if event not in SUBJECTS:
        raise ValueError(f"unknown requester email event {event!r}")
    context = {
        "reference": rights_request.reference,
        "request_type": rights_request.get_request_type_display(),
        # Until the address is confirmed it may not be the requester's: no name in the greeting.
        "name": rights_request.name if rights_request.email_confirmed_at else "",
        "due_on": rights_request.effective_due_on or rights_request.policy_due_on,
        "closed_on": rights_request.closed_at,
        "portal_url": settings.APP_BASE_URL.rstrip("/") + "/",
        # Every email after confirmation links the status page (the link in force: a new one replaces it).
        "status_url": (
            absolute_url("dsr_requests:status", token=rights_request.status_token)
            if rights_request.status_token
            else ""
        ),
        "lost_link_url": absolute_url("dsr_requests:lost-link"),
        **context,
    }
    subject = str(SUBJECTS[event] % {"reference": rights_request.reference})
    text = render_to_string(f"emails/{event}.txt", context)
    html = render_to_string(f"emails/{event}.html", context)
    return subject, text, html
