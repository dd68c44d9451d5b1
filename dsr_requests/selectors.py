"""Reads for the public pages: finding a request by its status token, and what its page shows."""

import hmac
import re

from dsr_requests import services, tokens
from dsr_requests.models import RightsRequest

_TOKEN_SHAPE = re.compile(r"[0-9a-f]{64}")


def request_for_status_token(token):
    """The request a status token opens, or None; every wrong token gets the same None.

    The lookup is by the token's SHA-256, so timing says nothing about the token itself; the final
    comparison is constant-time all the same.
    """
    if not _TOKEN_SHAPE.fullmatch(token or ""):
        return None
    digest = tokens.status_token_hash(token)
    rights_request = RightsRequest.objects.filter(status_token_hash=digest).first()
    if rights_request is None or not hmac.compare_digest(rights_request.status_token_hash, digest):
        return None
    return rights_request


def status_page_context(rights_request):
    """What the status page shows: public timeline, open questions, and which proofs are still needed."""
    outstanding = services.outstanding_identity_steps(rights_request)
    open_steps = {step for group in outstanding for step in group}
    return {
        "rights_request": rights_request,
        "events": rights_request.events.filter(public=True).order_by("created_at", "id"),
        "open_questions": list(rights_request.questions.filter(answered_at__isnull=True)),
        "needs_account_proof": rights_request.state == "verifying" and "account" in open_steps,
        "needs_document": rights_request.state == "verifying" and "document" in open_steps,
        "documents_sent": rights_request.identity_documents.count(),
        "can_withdraw": "withdrawn" in services.ALLOWED_TRANSITIONS[rights_request.state],
    }
