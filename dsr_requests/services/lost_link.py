"""Lost status links: the request path, the worker that sends the links, and the renewal the owner opens.

Two attacks shaped this module (SECURITY.md, "Security round two", item 1):

* **Timing.** Looking an address up and rendering emails on the request path took measurably longer for
  an address with requests than for one without, so the lost-link form told anyone whether an address
  had asked us something. The request path now does the same constant work for every address: one
  keyed hash and one queued job carrying only that hash (no address, so the queue holds no personal
  data). The worker looks the hash up and decides whether there is anything to send.
* **Cutting the owner off.** Each request used to replace the status token at once, so anyone who knew
  an address could retire its owner's link again and again. The email now carries a *renewal* link,
  signed and bound to the current token's hash: the current status link keeps working until the owner
  opens the renewal link and asks for the new one (a POST, so a mail scanner's GET uses up nothing).
  Once used, the binding no longer matches and the renewal link is dead.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from artemis_portal import keys
from dsr_requests import emails, tokens
from dsr_requests.models import RequestState, RightsRequest
from dsr_requests.services._base import _event, _lock, background_task
from dsr_requests.services.intake import _confirmation_email_context
from dsr_requests.services.outbox import queue_requester_email
from dsr_requests.states import REQUESTER

if TYPE_CHECKING:
    from dsr_requests.states import Actor

_RENEW_SALT = "dsr_requests.renew-status-link"


class RenewalRefused(Exception):
    """A renewal link that cannot be used (expired, already used, forged); ``str()`` says why."""


def renewal_max_age() -> int:
    """How long a renewal link stays valid, in seconds: as long as a confirmation link."""
    return settings.DSR_CONFIRMATION_MAX_AGE_HOURS * 3600


def _binding(status_token_hash: str) -> str:
    """A keyed digest of the current status token's hash: the renewal link works while it is current."""
    key = keys.derived_key("artemis.dsr.status-renew")
    return hmac.new(key, status_token_hash.encode(), hashlib.sha256).hexdigest()[:32]


def renewal_token(rights_request: RightsRequest) -> str:
    """A signed, timestamped token naming the request and bound to its current status token."""
    return signing.TimestampSigner(salt=_RENEW_SALT).sign_object(
        {"r": rights_request.reference, "b": _binding(rights_request.status_token_hash or "")}
    )


@sensitive_variables("email")
def request_links(*, email: str, actor: Actor = REQUESTER) -> None:
    """Queue the sending of fresh links to ``email``: the same constant work whatever the address.

    One keyed hash and one queued job holding only that hash; no lookup, no rendering, no email here.
    The caller shows the same page whatever happens, so nothing tells whether the address has requests.
    """
    background_task("send_lost_links").enqueue(tokens.email_blind_index(email))


def send_links(*, email_hash: str, actor: Actor = REQUESTER) -> int:
    """Email fresh links to each request whose address has this blind index; returns how many.

    Runs in the worker. A confirmed request gets a renewal link (its current status link stays valid
    until the owner uses it); an unconfirmed one gets its confirmation link again. Erased requests
    (tombstones) have no address and are skipped.
    """
    found = 0
    matches = RightsRequest.objects.filter(email_hash=email_hash, erased_at__isnull=True).exclude(
        email_hash=""
    )
    for rights_request in matches.order_by("received_at"):
        with transaction.atomic():
            locked = _lock(rights_request)
            if locked.state == RequestState.SUBMITTED:
                queue_requester_email(
                    rights_request=locked,
                    event="confirm_reminder",
                    **_confirmation_email_context(locked),
                )
            elif locked.status_token_hash:
                queue_requester_email(
                    rights_request=locked,
                    event="status_link",
                    status_url=emails.absolute_url(
                        "dsr_requests:renew-status", query={"token": renewal_token(locked)}
                    ),
                )
            else:
                continue
            found += 1
    return found


@sensitive_variables("email")
def resend_links(*, email: str, actor: Actor = REQUESTER) -> int:
    """Email a person fresh links to each of their requests now; returns how many requests were found.

    The worker's half of the lost-link page for callers that hold the address (``send_links`` by the
    address's blind index); the page itself only queues the job (``request_links``) so that its answer
    takes the same time for every address.
    """
    return send_links(email_hash=tokens.email_blind_index(email), actor=actor)


def read_renewal_token(token: str) -> dict[str, str]:
    """The reference inside a renewal token, checked for signature and age; raises ``RenewalRefused``."""
    try:
        data = signing.TimestampSigner(salt=_RENEW_SALT).unsign_object(token, max_age=renewal_max_age())
    except signing.SignatureExpired:
        raise RenewalRefused(_("This link has expired. Ask for a new one on the lost-link page.")) from None
    except (signing.BadSignature, ValueError, TypeError):
        raise RenewalRefused(_("This link is not valid. Check that you copied all of it.")) from None
    if not isinstance(data, dict) or not isinstance(data.get("r"), str) or not isinstance(data.get("b"), str):
        raise RenewalRefused(_("This link is not valid. Check that you copied all of it."))
    return data


def renew_status_link(*, token: str, actor: Actor = REQUESTER) -> str:
    """Replace the request's status token, if ``token`` is a valid renewal link; returns the new token.

    The old status link stops working only now, when the owner (who holds the mailbox) asks for it.
    """
    data = read_renewal_token(token)
    refused = RenewalRefused(_("This link has been used already or is no longer valid."))
    with transaction.atomic():
        rights_request = (
            RightsRequest.objects.select_for_update()
            .filter(reference=data["r"], erased_at__isnull=True)
            .first()
        )
        if rights_request is None or not rights_request.status_token_hash:
            raise refused
        if not hmac.compare_digest(_binding(rights_request.status_token_hash), data["b"]):
            raise refused
        new_token, rights_request.status_token_hash = tokens.new_status_token()
        rights_request.status_token = new_token  # the link later emails carry
        rights_request.save(update_fields=["status_token_hash", "status_token", "updated_at"])
        _event(
            rights_request,
            actor=actor,
            note=_("A new status page link was opened; the old one no longer works"),
        )
    return new_token
