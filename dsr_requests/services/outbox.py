"""The requester email outbox: emails are queued in the transaction that decides them and delivered by a
background task (or the ``send_pending_emails`` sweep), so a rolled-back action sends nothing.
"""

from __future__ import annotations

import smtplib
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from dsr_requests import emails
from dsr_requests.models import (
    EmailStatus,
    OutboundEmail,
)
from dsr_requests.services._base import ActionRefused, _event, _lock, _require, background_task, logger

if TYPE_CHECKING:
    from datetime import datetime

    from django.contrib.auth.models import User

    from dsr_requests.models import RightsRequest

# The only emails an address that has not been confirmed may receive: the link that confirms it (and its
# reminder). They carry no personal data: no name, no details, no dates of the request.
UNCONFIRMED_ADDRESS_EVENTS = frozenset({"received", "confirm_reminder"})


def queue_requester_email(
    *, rights_request: RightsRequest, event: str, to: str | None = None, **context: Any
) -> OutboundEmail:
    """Render a requester email into the outbox and send it once the transaction commits.

    Queuing in the same transaction as the change it reports means the email exists exactly when the
    change does; if sending fails (or the queue is down), ``send_due_emails`` tries again later. ``to``
    replaces the requester's address (a transfer sent to the receiving organisation).
    """
    if to is None and rights_request.email_confirmed_at is None and event not in UNCONFIRMED_ADDRESS_EVENTS:
        # GDPR Art. 12(6), Art. 5(1)(f): until the address is proven to be the requester's, it may belong to
        # someone else; it gets the confirmation link and nothing else.
        raise ActionRefused(
            _(
                "The requester has not confirmed their email address yet, so nothing but the confirmation "
                "link is sent to it."
            )
        )
    subject, text, html = emails.render(event, rights_request, **context)
    email = OutboundEmail.objects.create(
        request=rights_request,
        event=event,
        to=to or rights_request.email,
        subject=subject,
        body_text=text,
        body_html=html,
        next_attempt_at=timezone.now(),
    )
    transaction.on_commit(lambda: _enqueue_send(email.pk))
    return email


def _enqueue_send(email_id: int) -> None:
    """Hand an outbox row to the task queue; a queue failure leaves it for the sweep."""
    try:
        background_task("send_requester_email").enqueue(email_id)
    except Exception:  # the sweep is the safety net; the request itself is already stored
        logger.warning("could not enqueue requester email %s; the sweep will send it", email_id)


def deliver_email(*, email_id: int, now: datetime | None = None) -> str | None:
    """Try to send one pending outbox email; on failure schedule a retry with exponential backoff.

    Returns the email's status afterwards. The row is locked while sending so the task and the sweep
    never send the same email twice. Error text from SMTP servers can quote the address, so only the
    exception's class is kept.
    """
    now = now or timezone.now()
    with transaction.atomic():
        email = (
            OutboundEmail.objects.select_for_update().filter(pk=email_id, status=EmailStatus.PENDING).first()
        )
        if email is None:
            return None
        message = EmailMultiAlternatives(email.subject, email.body_text, to=[email.to])
        message.attach_alternative(email.body_html, "text/html")
        email.attempts += 1
        try:
            message.send()
        except (smtplib.SMTPException, OSError) as exc:
            email.last_error = type(exc).__name__[:200]
            if email.attempts >= settings.DSR_EMAIL_MAX_ATTEMPTS:
                email.status = EmailStatus.FAILED
                email.next_attempt_at = None
                logger.error("requester email %s (%s) failed for good", email.pk, email.event)
            else:
                email.next_attempt_at = now + timedelta(minutes=2**email.attempts)
                logger.warning("requester email %s (%s) failed; will retry", email.pk, email.event)
        else:
            email.status = EmailStatus.SENT
            email.sent_at = now
            email.next_attempt_at = None
            email.last_error = ""
            # The bodies carry confirmation and status links: no need to keep secrets once delivered.
            email.body_text = email.body_html = ""
        email.save()
        return email.status


def retry_failed_emails(*, rights_request: RightsRequest, actor: User) -> int:
    """Put the request's emails that failed for good back in the outbox; returns how many.

    For when staff have fixed what stopped them (a full mailbox, an SMTP outage that outlasted the
    retries). Each starts a fresh round of ``DSR_EMAIL_MAX_ATTEMPTS`` tries; an internal note records who
    asked. Needs the correspondence permission (``hold_request``).
    """
    _require(actor, "hold_request")
    with transaction.atomic():
        locked = _lock(rights_request)
        failed = list(
            OutboundEmail.objects.select_for_update().filter(request=locked, status=EmailStatus.FAILED)
        )
        for email in failed:
            email.status = EmailStatus.PENDING
            email.attempts = 0
            email.next_attempt_at = timezone.now()
            email.save(update_fields=["status", "attempts", "next_attempt_at"])
            transaction.on_commit(partial(_enqueue_send, email.pk))
        if failed:
            _event(
                locked,
                actor=actor,
                note=ngettext(
                    "%(count)d failed email queued to be sent again.",
                    "%(count)d failed emails queued to be sent again.",
                    len(failed),
                )
                % {"count": len(failed)},
                public=False,
            )
    return len(failed)


def send_due_emails(*, now: datetime | None = None, limit: int = 500) -> tuple[int, int, int]:
    """Send every pending email whose retry time has come; returns (sent, still pending, failed)."""
    now = now or timezone.now()
    due = OutboundEmail.objects.filter(status=EmailStatus.PENDING, next_attempt_at__lte=now)
    outcome: dict[str, int] = {EmailStatus.SENT: 0, EmailStatus.PENDING: 0, EmailStatus.FAILED: 0}
    for email_id in due.order_by("next_attempt_at").values_list("pk", flat=True)[:limit]:
        status = deliver_email(email_id=email_id, now=now)
        if status:
            outcome[status] += 1
    return outcome[EmailStatus.SENT], outcome[EmailStatus.PENDING], outcome[EmailStatus.FAILED]
