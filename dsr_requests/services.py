"""Every write to rights requests: submission, confirmation, identity proof, withdrawal, closing, and the
staff workflow (holds, rejection, approval, fulfilment, extensions, deadlines; section at the end).

Services take keyword-only arguments and an ``actor``: a staff ``User``, or ``REQUESTER`` / ``SYSTEM`` for
the person behind the status page and for scheduled jobs. Each state change goes through
``_transition``, which checks the allowed-transitions table against a row locked with
``select_for_update`` and writes one ``RequestEvent``, so two people acting at once cannot both succeed.
"""

import base64
import logging
import smtplib
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.debug import sensitive_variables

from artemis_portal import storage as shared_storage
from artemis_portal.logging import redact
from dsr_requests import deadlines, emails, ledger, tokens
from dsr_requests.models import (
    AccountProofCode,
    Channel,
    CheckOutcome,
    DocumentKind,
    EmailStatus,
    FulfilmentRun,
    IdentityCheck,
    IdentityDocument,
    IdentityStep,
    OutboundEmail,
    RejectionGround,
    RequestEvent,
    RequestState,
    RequestType,
    RightsRequest,
    StaffQuestion,
)

logger = logging.getLogger(__name__)

S = RequestState
REQUESTER = RequestEvent.ActorKind.REQUESTER
SYSTEM = RequestEvent.ActorKind.SYSTEM

# Where each state may go. Leaving on_hold is only allowed back to the state it was held from (checked
# in _transition), or out through one of the exits listed here.
ALLOWED_TRANSITIONS = {
    S.SUBMITTED: {S.VERIFYING, S.WITHDRAWN, S.CLOSED_UNVERIFIED},
    S.VERIFYING: {S.IN_REVIEW, S.ON_HOLD, S.REJECTED, S.WITHDRAWN},
    S.IN_REVIEW: {S.APPROVED, S.ON_HOLD, S.REJECTED, S.WITHDRAWN},
    S.APPROVED: {S.FULFILLING, S.ON_HOLD, S.REJECTED, S.WITHDRAWN},
    S.FULFILLING: {S.COMPLETED, S.APPROVED},  # back to approved: the job failed, staff decide
    S.ON_HOLD: {S.VERIFYING, S.IN_REVIEW, S.APPROVED, S.REJECTED, S.WITHDRAWN},
    S.COMPLETED: set(),
    S.REJECTED: set(),
    S.WITHDRAWN: set(),
    S.CLOSED_UNVERIFIED: set(),
}
OPEN_STATES = frozenset(state for state, targets in ALLOWED_TRANSITIONS.items() if targets)


class ActionRefused(Exception):
    """An action that cannot be done now (requester or staff); the message says why, for the page to show."""


class InvalidTransition(Exception):
    """A state change the workflow does not allow; nothing was changed."""

    def __init__(self, rights_request, to_state):
        self.from_state = rights_request.state
        self.to_state = to_state
        super().__init__(
            _("A request that is “%(from)s” cannot become “%(to)s”.")
            % {"from": RequestState(self.from_state).label, "to": RequestState(to_state).label}
        )


def _actor_fields(actor):
    """Split an ``actor`` argument into the event's (user, actor_kind)."""
    if actor in (REQUESTER, SYSTEM):
        return None, RequestEvent.ActorKind(actor)
    if actor is None or not getattr(actor, "is_authenticated", False):
        raise ValueError("actor must be a staff user, REQUESTER or SYSTEM")
    return actor, RequestEvent.ActorKind.STAFF


def _lock(rights_request):
    """Re-read a request under a row lock; call inside ``transaction.atomic()``."""
    return RightsRequest.objects.select_for_update().get(pk=rights_request.pk)


def _event(rights_request, *, actor, note="", public=True, from_state=None, to_state=None):
    """Write one event row; a note without a state change has from_state == to_state.

    Every state change (a new request, every transition) is recorded here, so this is where the
    dashboard's counts follow it (``rollup``; issue 19).
    """
    from dsr_requests import rollup

    user, kind = _actor_fields(actor)
    event = RequestEvent.objects.create(
        request=rights_request,
        from_state=rights_request.state if from_state is None else from_state,
        to_state=to_state or rights_request.state,
        actor=user,
        actor_kind=kind,
        note=note,
        public=public,
    )
    rollup.state_changed(rights_request, from_state=event.from_state, to_state=event.to_state)
    return event


def _transition(rights_request, *, to_state, actor, note="", public=True):
    """Move a locked request to ``to_state`` if the table allows it, and record the event.

    The caller holds the row lock (``_lock``) inside ``transaction.atomic()``. Going on hold remembers the
    state to return to; leaving on_hold for a working state only goes back to that state.
    """
    from_state = rights_request.state
    to_state = RequestState(to_state)
    allowed = to_state in ALLOWED_TRANSITIONS[from_state]
    if from_state == S.ON_HOLD and to_state in (S.VERIFYING, S.IN_REVIEW, S.APPROVED):
        allowed = to_state == rights_request.held_from_state
    if not allowed:
        raise InvalidTransition(rights_request, to_state)
    if to_state == S.ON_HOLD and rights_request.hold_reason not in deadlines.HoldReason.values:
        raise ValueError("set hold_reason before putting a request on hold")
    rights_request.held_from_state = from_state if to_state == S.ON_HOLD else ""
    rights_request.state = to_state
    clock_fields, hold_summary = _track_clock(rights_request, from_state=from_state, to_state=to_state)
    rights_request.save(update_fields=["state", "held_from_state", "updated_at", *clock_fields])
    event = _event(rights_request, actor=actor, note=note, public=public, from_state=from_state)
    if hold_summary:
        # Staff see why each date moved (or did not): the reason decides whether the legal clock stopped.
        _event(rights_request, actor=SYSTEM, note=hold_summary, public=False)
    return event


@transaction.atomic
def transition(*, rights_request, to_state, actor, note="", public=True, hold_reason=""):
    """Lock the request, change its state and record the event; returns the locked, updated request.

    Going on hold needs ``hold_reason`` (a ``HoldReason``): it decides whether the legal clock stops.
    """
    locked = _lock(rights_request)
    if to_state == S.ON_HOLD:
        locked.hold_reason = hold_reason
    _transition(locked, to_state=to_state, actor=actor, note=note, public=public)
    return locked


# --- Emails -----------------------------------------------------------------------------------------


# The only emails an address that has not been confirmed may receive: the link that confirms it (and its
# reminder). They carry no personal data: no name, no details, no dates of the request.
UNCONFIRMED_ADDRESS_EVENTS = frozenset({"received", "confirm_reminder"})


def queue_requester_email(*, rights_request, event, to=None, **context):
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


def _enqueue_send(email_id):
    """Hand an outbox row to the task queue; a queue failure leaves it for the sweep."""
    from dsr_requests import tasks  # tasks call services; import here to avoid a cycle

    try:
        tasks.send_requester_email.enqueue(email_id)
    except Exception:  # the sweep is the safety net; the request itself is already stored
        logger.warning("could not enqueue requester email %s; the sweep will send it", email_id)


def deliver_email(*, email_id, now=None):
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


def retry_failed_emails(*, rights_request, actor):
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
            transaction.on_commit(lambda pk=email.pk: _enqueue_send(pk))
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


def send_due_emails(*, now=None, limit=500):
    """Send every pending email whose retry time has come; returns (sent, still pending, failed)."""
    now = now or timezone.now()
    due = OutboundEmail.objects.filter(status=EmailStatus.PENDING, next_attempt_at__lte=now)
    outcome = {EmailStatus.SENT: 0, EmailStatus.PENDING: 0, EmailStatus.FAILED: 0}
    for email_id in due.order_by("next_attempt_at").values_list("pk", flat=True)[:limit]:
        status = deliver_email(email_id=email_id, now=now)
        if status:
            outcome[status] += 1
    return outcome[EmailStatus.SENT], outcome[EmailStatus.PENDING], outcome[EmailStatus.FAILED]


# --- Intake -----------------------------------------------------------------------------------------


def confirmation_max_age():
    """How long an email confirmation link stays valid, in seconds."""
    return settings.DSR_CONFIRMATION_MAX_AGE_HOURS * 3600


def _confirmation_email_context(rights_request):
    return {
        "confirm_url": emails.absolute_url(
            "dsr_requests:confirm", query={"token": tokens.confirmation_token(rights_request)}
        ),
        "hours": settings.DSR_CONFIRMATION_MAX_AGE_HOURS,
        "close_after_days": settings.DSR_CLOSE_UNVERIFIED_AFTER_DAYS,
    }


# The first timeline entry of a request, by the channel it came through.
RECEIVED_NOTES = {
    Channel.WEB: _("Request received"),
    Channel.EMAIL: _("Request received by email, logged by staff"),
    Channel.POST: _("Request received by post, logged by staff"),
    Channel.PHONE: _("Request received by phone, logged by staff"),
}


@sensitive_variables("name", "email", "details", "transfer_email", "site_url", "agent_name", "agent_email")
def submit_request(
    *,
    request_type,
    name,
    email,
    details="",
    site_url="",
    concerns="",
    transfer_to="",
    transfer_email="",
    country="",
    actor=REQUESTER,
    now=None,
    channel=Channel.WEB,
    received_at=None,
    agent_name="",
    agent_email="",
):
    """Store a new request (state ``submitted``) and email the link that confirms the address.

    The reference is random; a clash with an existing one (about one in 10^8 per pair) is retried.
    A request staff log from another channel (``staff_intake.log_request``) passes its ``channel`` and
    the moment it was ``received_at``, which starts every clock; a request made by an authorized agent
    names the agent (``agent_name``, ``agent_email``), who is sent nothing: every email goes to the
    requester's own address.
    """
    now = now or timezone.now()
    received_at = received_at or now
    channel = Channel(channel)
    for _attempt in range(5):
        reference = tokens.new_reference()
        try:
            with transaction.atomic():
                rights_request = RightsRequest.objects.create(
                    reference=reference,
                    request_type=RequestType(request_type),
                    name=name,
                    email=email,
                    email_hash=tokens.email_blind_index(email),
                    details=details,
                    site_url=site_url,
                    concerns=concerns,
                    transfer_to=transfer_to,
                    transfer_email=transfer_email,
                    country=country,
                    received_at=received_at,
                    channel=channel,
                    by_agent=bool(agent_name),
                    agent_name=agent_name,
                    agent_email=agent_email,
                    **initial_deadline_fields(received_at=received_at, country=country),
                )
                _event(
                    rights_request,
                    actor=actor,
                    note=RECEIVED_NOTES[channel],
                    from_state="",
                    to_state=S.SUBMITTED,
                )
                if agent_name:
                    _event(
                        rights_request,
                        actor=actor,
                        note=_(
                            "Made on your behalf by an authorized agent. You confirm your email address and "
                            "prove your identity yourself; we check the agent's written permission."
                        ),
                    )
                queue_requester_email(
                    rights_request=rights_request,
                    event="received",
                    **_confirmation_email_context(rights_request),
                )
                return rights_request
        except IntegrityError:
            if not RightsRequest.objects.filter(reference=reference).exists():
                raise
    raise RuntimeError("could not find a free request reference")


def required_identity_steps(request_type):
    """The requirements for a request type: a list of groups, one step of each group must pass."""
    return settings.DSR_IDENTITY_STEPS[request_type]


def passed_identity_steps(rights_request):
    """The set of identity steps this request has passed."""
    return set(
        rights_request.identity_checks.filter(outcome=CheckOutcome.PASSED).values_list("step", flat=True)
    )


def outstanding_identity_steps(rights_request):
    """The requirement groups not yet met, e.g. ``[["account", "document"]]``.

    A request made by an authorized agent also needs staff to have checked the agent's written
    permission (CCPA regs §7063(a)), on top of the person's own proof for the request type.
    """
    passed = passed_identity_steps(rights_request)
    groups = list(required_identity_steps(rights_request.request_type))
    if rights_request.by_agent:
        groups.append([IdentityStep.AGENT_PERMISSION.value])
    return [group for group in groups if not passed & set(group)]


def _advance_if_verified(locked):
    """Move a verifying request whose every identity requirement is met to ``in_review``."""
    if locked.state != S.VERIFYING or outstanding_identity_steps(locked):
        return False
    _transition(locked, to_state=S.IN_REVIEW, actor=SYSTEM, note=_("Identity verified"), public=True)
    # Proof is complete: a document uploaded while another step (account proof) settled it is no longer
    # needed, and the design keeps documents no longer than the identity decision.
    _drop_proof_material(locked)
    return True


def confirm_email(*, reference, actor=REQUESTER, now=None):
    """Record email control, move the request to ``verifying`` and email the status-page link.

    Single use: a request already past ``submitted`` refuses the link. Returns the request and the new
    status token (its only plain-text copy besides the email).
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = RightsRequest.objects.select_for_update().filter(reference=reference).first()
        if locked is None or locked.state != S.SUBMITTED:
            raise ActionRefused(_("This confirmation link has already been used or is no longer valid."))
        token, token_hash = tokens.new_status_token()
        locked.email_confirmed_at = now
        locked.status_token_hash = token_hash
        locked.save(update_fields=["email_confirmed_at", "status_token_hash", "updated_at"])
        IdentityCheck.objects.create(
            request=locked, step=IdentityStep.EMAIL, method="signed email link", outcome=CheckOutcome.PASSED
        )
        _transition(locked, to_state=S.VERIFYING, actor=actor, note=_("Email address confirmed"))
        verified = _advance_if_verified(locked)
        queue_requester_email(
            rights_request=locked,
            event="confirmed",
            status_url=emails.absolute_url("dsr_requests:status", token=token),
            verified=verified,
            agent_check_pending=not verified and _waiting_only_for_agent_check(locked),
        )
        return locked, token


def _waiting_only_for_agent_check(rights_request):
    """Whether the person has given every proof of their own and only the agent's permission is left."""
    return outstanding_identity_steps(rights_request) == [[IdentityStep.AGENT_PERMISSION]]


def record_identity_step(*, rights_request, step, outcome, method, actor, note=""):
    """Record the outcome of an identity step and move the request on when every requirement is met.

    Staff record the document check here: the uploaded documents are deleted in the same transaction,
    because once the decision is recorded there is no reason to keep them. The same holds for an
    authorized agent's written permission, which staff may check as soon as the request is logged.
    """
    with transaction.atomic():
        locked = _lock(rights_request)
        open_states = (S.VERIFYING, S.ON_HOLD)
        if step == IdentityStep.AGENT_PERMISSION:
            open_states = (S.SUBMITTED, *open_states)
        if locked.state not in open_states:
            raise ActionRefused(_("Identity can only be checked while the request is being verified."))
        user, _kind = _actor_fields(actor)
        check = IdentityCheck.objects.create(
            request=locked, step=step, method=method, outcome=outcome, actor=user, note=note
        )
        if step in DECIDED_DOCUMENTS:
            locked.identity_documents.filter(kind=DECIDED_DOCUMENTS[step]).delete()
        label = IdentityStep(step).label
        _event(
            locked,
            actor=actor,
            note=_("%(step)s: passed") % {"step": label}
            if outcome == CheckOutcome.PASSED
            else _("%(step)s: not accepted") % {"step": label},
        )
        if _advance_if_verified(locked):
            queue_requester_email(rights_request=locked, event="identity_verified")
        return check


# The documents a staff decision on an identity step settles (and deletes).
DECIDED_DOCUMENTS = {
    IdentityStep.DOCUMENT: DocumentKind.IDENTITY,
    IdentityStep.AGENT_PERMISSION: DocumentKind.AGENT_PERMISSION,
}


def issue_account_code(*, rights_request, actor=REQUESTER, now=None):
    """A new one-time code for the Atlassian account proof; earlier unused codes stop working."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = _lock(rights_request)
        if locked.state != S.VERIFYING or not any(
            IdentityStep.ACCOUNT in group for group in outstanding_identity_steps(locked)
        ):
            raise ActionRefused(_("This request does not need an Atlassian account proof now."))
        locked.account_codes.filter(used_at__isnull=True).delete()
        code, code_hash = tokens.new_account_code()
        AccountProofCode.objects.create(
            request=locked,
            code_hash=code_hash,
            expires_at=now + timedelta(minutes=settings.DSR_ACCOUNT_CODE_TTL_MINUTES),
        )
        _event(locked, actor=actor, note=_("Atlassian account code created"), public=False)
        return code


def _same_site(claimed_url, site_url):
    """Whether the site the requester named is the site the code came from (host match)."""
    return (urlsplit(claimed_url).hostname or "").lower() == (urlsplit(site_url).hostname or "").lower()


@sensitive_variables("code")
def redeem_account_code(*, code, client_key, site_url, account_id, actor=REQUESTER, now=None):
    """Bind the Atlassian account and site of a Connect JWT to the request whose code was entered.

    A code works once, before it expires, and only from the site the request named (when it named one).
    Returns the request.
    """
    now = now or timezone.now()
    with transaction.atomic():
        proof = (
            AccountProofCode.objects.select_for_update()
            .filter(code_hash=tokens.account_code_hash(code))
            .select_related("request")
            .first()
        )
        if proof is None:
            raise ActionRefused(
                _("This code is not valid. Check it, or get a new one from your status page.")
            )
        if proof.used_at is not None:
            raise ActionRefused(_("This code has already been used."))
        if proof.expires_at <= now:
            raise ActionRefused(_("This code has expired. Get a new one from your status page."))
        locked = _lock(proof.request)
        if locked.site_url and not _same_site(locked.site_url, site_url):
            raise ActionRefused(_("This code belongs to a request about another Atlassian site."))
        if locked.state != S.VERIFYING:
            raise ActionRefused(_("This request does not need an Atlassian account proof now."))
        proof.used_at = now
        proof.save(update_fields=["used_at"])
        locked.account_id = account_id
        locked.site_client_key = client_key
        locked.verified_site_url = site_url
        locked.save(update_fields=["account_id", "site_client_key", "verified_site_url", "updated_at"])
        IdentityCheck.objects.create(
            request=locked,
            step=IdentityStep.ACCOUNT,
            method="one-time code in the Connect app",
            outcome=CheckOutcome.PASSED,
        )
        _event(locked, actor=actor, note=_("Atlassian account confirmed"))
        if _advance_if_verified(locked):
            queue_requester_email(rights_request=locked, event="identity_verified")
        return locked


MAX_DOCUMENTS_PER_REQUEST = 5


def add_identity_document(*, rights_request, content, content_type, actor=REQUESTER):
    """Store an identity document, encrypted, for the staff check; the caller has checked type and size."""
    with transaction.atomic():
        locked = _lock(rights_request)
        if locked.state != S.VERIFYING or not any(
            IdentityStep.DOCUMENT in group for group in outstanding_identity_steps(locked)
        ):
            raise ActionRefused(_("This request does not need an identity document now."))
        if locked.identity_documents.filter(kind=DocumentKind.IDENTITY).count() >= MAX_DOCUMENTS_PER_REQUEST:
            raise ActionRefused(_("You have already sent the most documents we accept for one request."))
        document = IdentityDocument.objects.create(
            request=locked,
            kind=DocumentKind.IDENTITY,
            content=base64.b64encode(content).decode("ascii"),
            content_type=content_type,
            size=len(content),
        )
        _event(locked, actor=actor, note=_("Identity document received; our staff will check it"))
        return document


def answer_question(*, question, answer, actor=REQUESTER, now=None):
    """Store the requester's answer; a request on hold for it goes back to where it was."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = _lock(question.request)
        question = StaffQuestion.objects.select_for_update().get(pk=question.pk)
        if question.answered_at is not None:
            raise ActionRefused(_("This question has already been answered."))
        if locked.state not in OPEN_STATES:
            raise ActionRefused(_("This request is closed."))
        question.answer = answer
        question.answered_at = now
        question.save(update_fields=["answer", "answered_at"])
        _event(locked, actor=actor, note=_("You answered our question"))
        if locked.state == S.ON_HOLD and not locked.questions.filter(answered_at__isnull=True).exists():
            _transition(
                locked, to_state=locked.held_from_state, actor=actor, note=_("Resumed after your answer")
            )
        return question


def _drop_proof_material(locked):
    """Delete what identity proof left behind: uploaded documents and unused codes."""
    locked.identity_documents.all().delete()
    locked.account_codes.filter(used_at__isnull=True).delete()


def withdraw(*, rights_request, actor=REQUESTER):
    """Withdraw a request at the requester's wish and tell them by email."""
    with transaction.atomic():
        locked = _lock(rights_request)
        _transition(locked, to_state=S.WITHDRAWN, actor=actor, note=_("Withdrawn by the requester"))
        _drop_proof_material(locked)
        if locked.email_confirmed_at:  # an unconfirmed address gets nothing but its confirmation link
            queue_requester_email(rights_request=locked, event="withdrawn")
        return locked


def send_confirmation_reminders(*, now=None):
    """Send the one reminder to requests unconfirmed for DSR_REMINDER_AFTER_DAYS; returns how many."""
    now = now or timezone.now()
    # Counted from when the confirmation link was first sent (the row's creation), not from receipt: a
    # request received by post a week ago and logged today has had its link for no time at all.
    due = RightsRequest.objects.filter(
        state=S.SUBMITTED,
        reminder_sent_at__isnull=True,
        created_at__lte=now - timedelta(days=settings.DSR_REMINDER_AFTER_DAYS),
        created_at__gt=now - timedelta(days=settings.DSR_CLOSE_UNVERIFIED_AFTER_DAYS),
    )
    sent = 0
    for pk in due.values_list("pk", flat=True):
        with transaction.atomic():
            locked = RightsRequest.objects.select_for_update().get(pk=pk)
            if locked.state != S.SUBMITTED or locked.reminder_sent_at:
                continue
            locked.reminder_sent_at = now
            locked.save(update_fields=["reminder_sent_at", "updated_at"])
            queue_requester_email(
                rights_request=locked, event="confirm_reminder", **_confirmation_email_context(locked)
            )
            sent += 1
    return sent


def close_unverified_requests(*, now=None, actor=SYSTEM):
    """Close requests unconfirmed for DSR_CLOSE_UNVERIFIED_AFTER_DAYS and erase their personal data.

    Nobody proved the address was theirs, so nothing is kept that could identify anyone: only the
    reference, type, dates and the event history remain.
    """
    now = now or timezone.now()
    stale = RightsRequest.objects.filter(
        state=S.SUBMITTED, created_at__lte=now - timedelta(days=settings.DSR_CLOSE_UNVERIFIED_AFTER_DAYS)
    )
    closed = 0
    for pk in stale.values_list("pk", flat=True):
        with transaction.atomic():
            locked = RightsRequest.objects.select_for_update().get(pk=pk)
            if locked.state != S.SUBMITTED:
                continue
            _transition(
                locked,
                to_state=S.CLOSED_UNVERIFIED,
                actor=actor,
                note=_("Closed: the email address was never confirmed"),
            )
            _erase_personal_data(locked)
            closed += 1
    return closed


def _erase_personal_data(locked):
    """Blank every field that could identify the requester, and their emails and proof material."""
    for field in (
        "name",
        "email",
        "email_hash",
        "details",
        "site_url",
        "transfer_email",
        "agent_name",
        "agent_email",
    ):
        setattr(locked, field, "")
    locked.save()
    _drop_proof_material(locked)
    locked.questions.all().delete()
    locked.emails.update(to="", body_text="", body_html="")


# =====================================================================================================
# Staff workflow: deadlines, holds, extensions, and one function per staff action.
#
# Each action checks the actor's permission (the roles are groups of these permissions), locks the row,
# refuses what the rules do not allow with InvalidTransition / ActionRefused / PermissionDenied before
# changing anything, writes one event, and queues any requester email in the same transaction, so of two
# staff acting at once exactly one succeeds and exactly one email goes out.
# =====================================================================================================

FINAL_STATES = frozenset(state for state, targets in ALLOWED_TRANSITIONS.items() if not targets)


def apply_due_dates(rights_request):
    """Set the stored due dates from receipt, regime, completed holds and extension; does not save.

    Returns the names of the fields it set, for ``save(update_fields=...)``. Call it on receipt and
    whenever one of those inputs changes; lists, filters and the digest read only the stored columns.
    """
    received_on = timezone.localdate(rights_request.received_at)
    policy = deadlines.policy_due_date(
        received_on,
        extra_working_days=rights_request.hold_working_days + rights_request.extension_working_days,
    )
    # hold_calendar_days counts only holds whose reason stops the legal clock; statutory_due_date applies
    # them under GDPR / UK GDPR only (under CCPA the 45 days run from receipt) and caps CCPA at day 90.
    statutory = deadlines.statutory_due_date(
        received_on,
        regime=rights_request.regime,
        extra_calendar_days=rights_request.extension_calendar_days,
        hold_calendar_days=rights_request.hold_calendar_days,
    )
    rights_request.policy_due_on = policy
    rights_request.statutory_due_on = statutory
    rights_request.effective_due_on = min(policy, statutory)
    return ["policy_due_on", "statutory_due_on", "effective_due_on"]


def initial_deadline_fields(*, received_at, country):
    """Regime (from the requester's country) and due dates of a request received at ``received_at``."""
    probe = RightsRequest(received_at=received_at, regime=deadlines.regime_for_country(country))
    apply_due_dates(probe)
    return {
        "regime": probe.regime,
        "policy_due_on": probe.policy_due_on,
        "statutory_due_on": probe.statutory_due_on,
        "effective_due_on": probe.effective_due_on,
    }


def _track_clock(rights_request, *, from_state, to_state):
    """Stop the clock on hold, restart it (moving the due dates) on leaving hold, stamp closing.

    Called by ``_transition`` before it saves, so every way in and out of on_hold (staff, requester,
    system) keeps the deadlines right. Every hold moves the policy date by its working days; only a hold
    whose reason stops the legal clock (identity, clarification) counts towards the statutory date.
    Returns the extra fields to save, and on leaving hold a note for staff saying how the dates moved.
    """
    now = timezone.now()
    fields, summary = [], ""
    if to_state == S.ON_HOLD:
        rights_request.held_since = now
        fields += ["held_since", "hold_reason"]
    elif from_state == S.ON_HOLD:
        held_on, resumed_on = timezone.localdate(rights_request.held_since), timezone.localdate(now)
        working = deadlines.working_days_between(held_on, resumed_on)
        reason = deadlines.HoldReason(rights_request.hold_reason)
        stopped = _statutory_clock_stops(rights_request.regime, reason)
        rights_request.hold_working_days += working
        if reason.stops_statutory_clock:
            # Kept whatever the regime, so a later regime change recomputes the dates correctly.
            rights_request.hold_calendar_days += (resumed_on - held_on).days
        rights_request.held_since = None
        rights_request.hold_reason = ""
        fields += [
            "held_since",
            "hold_reason",
            "hold_working_days",
            "hold_calendar_days",
            *apply_due_dates(rights_request),
        ]
        summary = _hold_summary(rights_request, reason=reason, working=working, stopped=stopped)
    if to_state in FINAL_STATES:
        rights_request.closed_at = now
        fields.append("closed_at")
    return fields, summary


def _statutory_clock_stops(regime, reason):
    """Whether a hold for ``reason`` stops the legal clock under ``regime``.

    GDPR / UK GDPR: only to verify identity or clarify the request (EDPB Guidelines 01/2022; ICO, "Can we
    stop the clock?"). CCPA: never (regulations §7021(b): the 45 days run from receipt).
    """
    return regime in deadlines.MONTH_REGIMES and deadlines.HoldReason(reason).stops_statutory_clock


def _hold_summary(rights_request, *, reason, working, stopped):
    """The staff-only note on leaving hold: what the hold was for and which dates it moved."""
    values = {
        "reason": reason.label,
        "working": working,
        "policy": rights_request.policy_due_on.isoformat(),
        "statutory": rights_request.statutory_due_on.isoformat(),
    }
    if stopped:
        return str(
            _(
                "Hold ended (%(reason)s): our date moved by %(working)d working days to %(policy)s; "
                "the legal "
                "clock stood still too, so the statutory date is now %(statutory)s."
            )
            % values
        )
    return str(
        _(
            "Hold ended (%(reason)s): our date moved by %(working)d working days to %(policy)s; "
            "this hold does "
            "not stop the legal clock under %(regime)s, so the statutory date stays %(statutory)s."
        )
        % {**values, "regime": rights_request.get_regime_display()}
    )


def _require(actor, permission):
    """Refuse unless ``actor`` is an active staff user holding ``dsr_requests.<permission>``."""
    if not (getattr(actor, "is_authenticated", False) and actor.is_staff and actor.is_active):
        raise PermissionDenied(_("Only staff can do this."))
    if not actor.has_perm(f"dsr_requests.{permission}"):
        raise PermissionDenied(_("You do not have permission to do this."))


def _lock_for_action(rights_request, *, expected_state):
    """Lock the request; refuse when it is no longer in the state the staff member saw."""
    locked = _lock(rights_request)
    if expected_state and locked.state != expected_state:
        raise ActionRefused(
            _("Request %(reference)s changed meanwhile: it is now “%(state)s”. Nothing was done.")
            % {"reference": locked.reference, "state": locked.get_state_display()}
        )
    return locked


def _required_text(value, message):
    """The stripped text, or ActionRefused with ``message`` when it is blank."""
    value = (value or "").strip()
    if not value:
        raise ActionRefused(message)
    return value


# The same checks for the staff services in the modules beside this one (staff_intake.py).
require_permission = _require
required_text = _required_text


@transaction.atomic
def put_on_hold(*, rights_request, actor, message, reason, expected_state=None):
    """Ask the requester for something and stop the clock until they answer or staff resume.

    ``reason`` comes from the fixed list ``HoldReason``: a hold to verify identity or to clarify the
    request also stops the GDPR / UK GDPR clock; any other reason, and any hold under CCPA, pauses only
    the policy's working-day date.
    """
    _require(actor, "hold_request")
    if reason not in deadlines.HoldReason.values:
        raise ActionRefused(
            _("Choose why the request goes on hold from the list: %(reasons)s.")
            % {"reasons": "; ".join(str(label) for label in deadlines.HoldReason.labels)}
        )
    message = _required_text(message, _("Say what the requester needs to send or answer."))
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    locked.hold_reason = reason
    _transition(locked, to_state=S.ON_HOLD, actor=actor, note=message, public=True)
    StaffQuestion.objects.create(request=locked, question=message, asked_by=actor)
    queue_requester_email(rights_request=locked, event="more_information", question=message)
    return locked


@transaction.atomic
def resume(*, rights_request, actor, note="", expected_state=S.ON_HOLD):
    """Take a request off hold, back to the state it was held from; the due dates move by the hold."""
    _require(actor, "hold_request")
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    if locked.state != S.ON_HOLD:
        raise InvalidTransition(locked, locked.state)
    _transition(locked, to_state=locked.held_from_state, actor=actor, note=note, public=False)
    return locked


@transaction.atomic
def reject(*, rights_request, actor, reason, ground, expected_state=None, acknowledge_late=False):
    """Refuse the request; the reason is recorded and sent to the requester, the ground goes to the log.

    The email states the reasons, the right to complain to the supervisory authority that applies to the
    requester (``authorities.complaint_authorities``) and the right to a judicial remedy (GDPR / UK GDPR
    Art. 12(4); CCPA regulations §7022(f), §7024(e)). After the statutory date it is refused unless staff
    confirm with ``acknowledge_late``, and the lateness goes on the timeline.
    """
    from dsr_requests import authorities

    _require(actor, "reject_request")
    reason = _required_text(reason, _("A rejection needs a reason; it is sent to the requester."))
    if ground not in RejectionGround.values:
        raise ActionRefused(_("Choose the ground for the rejection; it goes into the request log."))
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    late = _confirm_if_late(locked, acknowledge_late=acknowledge_late, action=_("Rejecting it"))
    locked.rejection_reason = reason
    locked.rejection_ground = ground
    # First: a rejected row must carry its reason and ground (constraints).
    locked.save(update_fields=["rejection_reason", "rejection_ground"])
    _transition(locked, to_state=S.REJECTED, actor=actor, note=reason, public=True)
    _record_late(locked, actor=actor, late=late, action=_("Rejected"))
    queue_requester_email(
        rights_request=locked,
        event="rejected",
        reason=reason,
        ground=RejectionGround(ground).label,
        **authorities.refusal_context(regime=locked.regime, country=locked.country, ground=ground),
    )
    return locked


@transaction.atomic
def approve(*, rights_request, actor, note="", expected_state=None):
    """Approve a reviewed request so it can be fulfilled."""
    _require(actor, "approve_request")
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    # Only a request under review is approved. fulfilling -> approved is the failed job's way back, and
    # on_hold -> approved is ``resume``'s (with its own permission): approving there would also replace
    # the first approver of an erasure behind the second one's back.
    if locked.state != S.IN_REVIEW:
        raise InvalidTransition(locked, S.APPROVED)
    locked.approved_by = actor
    locked.save(update_fields=["approved_by"])
    _transition(locked, to_state=S.APPROVED, actor=actor, note=note, public=True)
    return locked


@transaction.atomic
def approve_erasure(*, rights_request, actor, note="", expected_state=S.APPROVED):
    """Give the second approval an erasure needs, from someone other than the first approver."""
    _require(actor, "approve_erasure")
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    if locked.request_type != RequestType.DELETE or locked.state != S.APPROVED:
        raise ActionRefused(_("Only an approved deletion request takes a second approval."))
    if locked.erasure_approved_by_id:
        raise ActionRefused(_("This erasure already has its second approval."))
    if locked.approved_by_id == actor.pk:
        raise ActionRefused(_("The second approval must come from someone other than the first approver."))
    locked.erasure_approved_by = actor
    locked.save(update_fields=["erasure_approved_by", "updated_at"])
    _event(
        locked, actor=actor, note=note or str(_("Erasure approved by a second staff member.")), public=False
    )
    return locked


@transaction.atomic
def start_fulfilment(*, rights_request, actor, note="", expected_state=S.APPROVED, acknowledge_late=False):
    """Start carrying out an approved request (an erasure only after its second approval)."""
    _require(actor, "fulfil_request")
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    if locked.request_type == RequestType.DELETE and not locked.erasure_approved_by_id:
        raise ActionRefused(_("An erasure needs a second staff member's approval first."))
    require_processing_register(request_type=locked.request_type)
    # The job answers the requester by itself when it ends: this is staff's last chance to be warned.
    late = _confirm_if_late(locked, acknowledge_late=acknowledge_late, action=_("Answering it"))
    _transition(locked, to_state=S.FULFILLING, actor=actor, note=note, public=True)
    _record_late(locked, actor=actor, late=late, action=_("Fulfilment started"))
    _begin_fulfilment_run(locked)
    return locked


@transaction.atomic
def complete(*, rights_request, actor, note="", expected_state=S.FULFILLING, acknowledge_late=False):
    """Record that the request has been carried out, and tell the requester.

    Refused while a fulfilment job is running: the job completes the request itself when its last step
    is done, and completing under it would tell the requester before the result exists. Refused for a
    processing, review or copy request while the processing register is empty, and after the statutory
    date unless staff confirm with ``acknowledge_late``.
    """
    _require(actor, "fulfil_request")
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    if _fulfilment_running(locked):
        raise ActionRefused(
            _("Request %(reference)s is being fulfilled by a background job; it completes when the job ends.")
            % {"reference": locked.reference}
        )
    require_processing_register(request_type=locked.request_type)
    late = _confirm_if_late(locked, acknowledge_late=acknowledge_late, action=_("Completing it"))
    _transition(locked, to_state=S.COMPLETED, actor=actor, note=note, public=True)
    _record_late(locked, actor=actor, late=late, action=_("Completed"))
    queue_requester_email(rights_request=locked, event="completed", note=note)
    return locked


def _fulfilment_running(rights_request):
    """Whether a background fulfilment job is under way for this request."""
    return FulfilmentRun.objects.filter(request=rights_request, status=FulfilmentRun.Status.RUNNING).exists()


def extension_window_closes(rights_request, today=None):
    """The last day an extension may be granted: the end of the first statutory period.

    GDPR / UK GDPR: the first month, lengthened by holds that stopped the clock (a running one included).
    CCPA: day 45 after receipt, whatever the holds (§1798.130(a)(2); regulations §7021(b)).
    """
    today = today or timezone.localdate()
    return deadlines.statutory_due_date(
        timezone.localdate(rights_request.received_at),
        regime=rights_request.regime,
        hold_calendar_days=rights_request.hold_calendar_days + _running_clock_stop(rights_request, today),
    )


def _running_clock_stop(rights_request, today):
    """Calendar days so far of a running hold that stops the legal clock (0 when there is none)."""
    if rights_request.state != S.ON_HOLD or not _statutory_clock_stops(
        rights_request.regime, rights_request.hold_reason
    ):
        return 0
    return max((today - timezone.localdate(rights_request.held_since)).days, 0)


def statutory_due_now(rights_request, today=None):
    """The statutory due date as it stands today: the stored date, moved on by a running hold that stops
    the legal clock (the stored date moves only when the hold ends)."""
    today = today or timezone.localdate()
    running_stop = _running_clock_stop(rights_request, today)
    if not running_stop or rights_request.statutory_due_on is None:
        return rights_request.statutory_due_on
    return deadlines.statutory_due_date(
        timezone.localdate(rights_request.received_at),
        regime=rights_request.regime,
        extra_calendar_days=rights_request.extension_calendar_days,
        hold_calendar_days=rights_request.hold_calendar_days + running_stop,
    )


def days_past_statutory_date(rights_request, today=None):
    """How many calendar days today is past the request's statutory date (0 when it is not late)."""
    today = today or timezone.localdate()
    due = statutory_due_now(rights_request, today)
    return max((today - due).days, 0) if due else 0


# The staff actions that refuse or answer a request, so need confirming after the statutory date.
LATE_CONFIRMED_ACTIONS = ("reject", "start_fulfilment", "complete")


class LateActionNotConfirmed(ActionRefused):
    """A refusal or answer after the statutory date that staff have not confirmed; nothing was done."""


def _confirm_if_late(locked, *, acknowledge_late, action):
    """Refuse an action past the statutory date unless staff confirmed it; returns the days late."""
    late = days_past_statutory_date(locked)
    if late and not acknowledge_late:
        raise LateActionNotConfirmed(
            _(
                "%(reference)s is %(days)d days past its statutory date (%(date)s). %(action)s now is late: "
                "tick “I know this is late” on its page to go ahead; it will be recorded on the timeline. "
                "Nothing was done."
            )
            % {
                "reference": locked.reference,
                "days": late,
                "date": statutory_due_now(locked).isoformat(),
                "action": action,
            }
        )
    return late


def _record_late(locked, *, actor, late, action):
    """Put a late refusal or answer on the timeline (staff only), so the log shows it whoever looks."""
    if late:
        _event(
            locked,
            actor=actor,
            note=str(
                _("%(action)s %(days)d days after the statutory date (%(date)s).")
                % {"action": action, "days": late, "date": statutory_due_now(locked).isoformat()}
            ),
            public=False,
        )


# Request types whose answer includes the processing register (GDPR / UK GDPR Art. 15(1)(a)-(h)).
REGISTER_TYPES = frozenset({RequestType.PROCESSING, RequestType.REVIEW, RequestType.COPY})


def require_processing_register(*, request_type):
    """Refuse to answer a processing, review or copy request while the processing register is empty
    (or an entry lacks a required part): the answer must describe the processing, never a placeholder."""
    from dsr_requests.models import ProcessingActivity

    if request_type not in REGISTER_TYPES:
        return
    activities = ProcessingActivity.objects.all()
    incomplete = activities.filter(
        Q(purposes="") | Q(data_categories="") | Q(legal_basis="") | Q(retention="")
    )
    if not activities.exists() or incomplete.exists():
        raise ActionRefused(
            _(
                "The processing register is empty or incomplete, and the answer to this request must "
                "describe how personal data is processed (GDPR Art. 15(1)). Fill in Rights requests → "
                "Processing register first (every entry needs purposes, data categories, legal basis and "
                "retention)."
            )
        )


@transaction.atomic
def extend_deadline(*, rights_request, actor, reason, months=None, days=None, expected_state=None):
    """Extend the time limit once, within the law's limits and window; the requester is told why.

    GDPR and UK GDPR: one or two further months, granted within the first month (Art. 12(3)). CCPA: up to
    45 further days (``days``, default 45; ``months`` must be None), granted within the first 45 days
    (Civ. Code §1798.130(a)(2)). Never to an address that has not been confirmed: the notice could not
    go out. Both due dates move. An extension after the window (so after the statutory date) is refused.
    """
    _require(actor, "extend_deadline")
    reason = _required_text(reason, _("An extension needs a reason; it is sent to the requester."))
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    if locked.state in FINAL_STATES:
        raise ActionRefused(_("A closed request cannot be extended."))
    if locked.extended_at:
        raise ActionRefused(_("This request has already been extended."))
    if locked.email_confirmed_at is None:
        raise ActionRefused(
            _(
                "The requester has not confirmed their email address, so the notice of an extension and its "
                "reason cannot be sent to them: the request cannot be extended."
            )
        )
    today = timezone.localdate()
    closes = extension_window_closes(locked, today)
    if today > closes:
        raise ActionRefused(
            _(
                "Too late to extend: a %(regime)s extension must be made within the first period, which "
                "ended on %(date)s (today is day %(day)d after receipt). Answer the request, or refuse it "
                "with reasons."
            )
            % {
                "regime": locked.get_regime_display(),
                "date": closes.isoformat(),
                "day": (today - timezone.localdate(locked.received_at)).days,
            }
        )
    try:
        allowance = deadlines.extension_allowance(
            timezone.localdate(locked.received_at), regime=locked.regime, months=months, days=days
        )
    except ValueError as exc:
        raise ActionRefused(str(exc)) from None
    locked.extended_at = timezone.now()
    locked.extension_calendar_days = allowance.calendar_days
    locked.extension_working_days = allowance.working_days
    locked.extension_reason = reason
    fields = apply_due_dates(locked)
    locked.save(
        update_fields=[
            "extended_at",
            "extension_calendar_days",
            "extension_working_days",
            "extension_reason",
            "updated_at",
            *fields,
        ]
    )
    _event(locked, actor=actor, note=reason, public=True)
    queue_requester_email(
        rights_request=locked, event="extended", reason=reason, due_on=locked.effective_due_on
    )
    return locked


@transaction.atomic
def change_regime(*, rights_request, actor, regime, expected_state=None):
    """Set the regime staff decided applies, and recompute the statutory date from it."""
    _require(actor, "extend_deadline")
    regime = RightsRequest.Regime(regime)
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    if locked.state in FINAL_STATES:
        raise ActionRefused(_("A closed request keeps the regime it was answered under."))
    if locked.extended_at:
        raise ActionRefused(_("The regime cannot change after an extension granted under it."))
    if locked.regime == regime:
        return locked
    previous = locked.get_regime_display()
    locked.regime = regime
    fields = apply_due_dates(locked)
    locked.save(update_fields=["regime", "updated_at", *fields])
    _event(
        locked,
        actor=actor,
        note=str(_("Regime changed from %(old)s to %(new)s.") % {"old": previous, "new": regime.label}),
        public=False,
    )
    return locked


@transaction.atomic
def assign(*, rights_request, actor, assignee):
    """Give the request to a staff member (or to nobody, with ``assignee=None``)."""
    _require(actor, "assign_request")
    if assignee is not None and not (assignee.is_staff and assignee.is_active):
        raise ActionRefused(_("Requests can only be assigned to active staff."))
    locked = _lock(rights_request)
    if locked.assignee_id == getattr(assignee, "pk", None):
        return locked
    locked.assignee = assignee
    locked.save(update_fields=["assignee", "updated_at"])
    who = assignee.get_username() if assignee else str(_("nobody"))
    _event(locked, actor=actor, note=str(_("Assigned to %(who)s.") % {"who": who}), public=False)
    return locked


def record_document_check(*, rights_request, actor, passed, note):
    """Record staff's decision on the requester's identity document (the upload is deleted with it)."""
    _require(actor, "verify_identity")
    note = _required_text(note, _("Say what you checked and why you decided so."))
    return record_identity_step(
        rights_request=rights_request,
        step=IdentityStep.DOCUMENT,
        outcome=CheckOutcome.PASSED if passed else CheckOutcome.FAILED,
        method=str(_("Staff review of an uploaded document")),
        actor=actor,
        note=note,
    )


DOCUMENT_EXTENSIONS = {"application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg"}


@dataclass(frozen=True)
class DocumentFile:
    """An identity document opened for staff: its bytes, the type detected at upload, a file name."""

    content: bytes
    content_type: str
    filename: str


@sensitive_variables("content")
def open_identity_document(*, rights_request, actor, document_id):
    """Decrypt an uploaded identity document for the staff member who must decide on it.

    Only while the decision is pending (the document is deleted when it is recorded) and only for
    staff holding ``view_identity_document``; the caller records the access in the audit.
    """
    _require(actor, "view_identity_document")
    document = IdentityDocument.objects.filter(request=rights_request, pk=document_id).first()
    if document is None:
        raise ActionRefused(
            _("This document is no longer held: it is deleted once the decision is recorded.")
        )
    content = base64.b64decode(document.content)
    extension = DOCUMENT_EXTENSIONS.get(document.content_type, "bin")
    prefix = "agent-permission" if document.kind == DocumentKind.AGENT_PERMISSION else "identity-document"
    return DocumentFile(
        content=content,
        content_type=document.content_type,
        filename=f"{prefix}-{rights_request.reference}-{document.pk}.{extension}",
    )


@dataclass(frozen=True)
class StaffAction:
    """An action staff can take on a request now; ``text`` names the field it needs, if any."""

    name: str
    label: str
    permission: str
    text: str = ""


STAFF_ACTIONS = (
    StaffAction("document_passed", _("Identity document accepted"), "verify_identity", text="note"),
    StaffAction("document_failed", _("Identity document not accepted"), "verify_identity", text="note"),
    StaffAction(
        "agent_permission_passed", _("Agent's written permission accepted"), "verify_identity", text="note"
    ),
    StaffAction(
        "agent_permission_failed",
        _("Agent's written permission not accepted"),
        "verify_identity",
        text="note",
    ),
    StaffAction("approve", _("Approve"), "approve_request"),
    StaffAction("approve_erasure", _("Give second approval of the erasure"), "approve_erasure"),
    StaffAction("start_fulfilment", _("Start fulfilment"), "fulfil_request"),
    StaffAction("complete", _("Mark completed"), "fulfil_request"),
    StaffAction("put_on_hold", _("Put on hold: ask the requester"), "hold_request", text="message"),
    StaffAction("resume", _("Resume"), "hold_request"),
    StaffAction("extend_deadline", _("Extend the deadline"), "extend_deadline", text="reason"),
    StaffAction("reject", _("Reject"), "reject_request", text="reason"),
    StaffAction("retry_emails", _("Send failed emails again"), "hold_request"),
)


def available_actions(rights_request, user):
    """The staff actions ``user`` may take on ``rights_request`` as it stands; the admin shows only these.

    The services enforce the same rules again under the row lock; this only decides which buttons to show.
    """
    state = rights_request.state
    targets = ALLOWED_TRANSITIONS[state]
    is_delete = rights_request.request_type == RequestType.DELETE
    document_open = state == S.VERIFYING and any(
        IdentityStep.DOCUMENT in group for group in outstanding_identity_steps(rights_request)
    )
    agent_check_open = state in (S.SUBMITTED, S.VERIFYING, S.ON_HOLD) and any(
        IdentityStep.AGENT_PERMISSION in group for group in outstanding_identity_steps(rights_request)
    )
    possible = {
        "document_passed": document_open,
        "document_failed": document_open,
        "agent_permission_passed": agent_check_open,
        "agent_permission_failed": agent_check_open,
        "approve": state == S.IN_REVIEW,
        "approve_erasure": is_delete
        and state == S.APPROVED
        and not rights_request.erasure_approved_by_id
        and rights_request.approved_by_id != user.pk,
        "start_fulfilment": state == S.APPROVED
        and (not is_delete or bool(rights_request.erasure_approved_by_id)),
        "complete": S.COMPLETED in targets and not _fulfilment_running(rights_request),
        "put_on_hold": S.ON_HOLD in targets,
        "resume": state == S.ON_HOLD,
        "extend_deadline": state not in FINAL_STATES
        and not rights_request.extended_at
        and rights_request.email_confirmed_at is not None
        and timezone.localdate() <= extension_window_closes(rights_request),
        "reject": S.REJECTED in targets,
        "retry_emails": rights_request.emails.filter(status=EmailStatus.FAILED).exists(),
    }
    return [
        action
        for action in STAFF_ACTIONS
        if possible[action.name] and user.has_perm(f"dsr_requests.{action.permission}")
    ]


# --- Staff digest ------------------------------------------------------------------------------------

DIGEST_ROWS = 200


def digest_recipients():
    """Where the staff digest goes: DSR_DIGEST_TO, else every active staff member who may see requests."""
    if settings.DSR_DIGEST_TO:
        return list(settings.DSR_DIGEST_TO)
    from django.contrib.auth import get_user_model

    permission = Q(codename="view_rightsrequest", content_type__app_label="dsr_requests")
    users = (
        get_user_model()
        .objects.filter(is_active=True, is_staff=True)
        .exclude(email="")
        .filter(
            Q(is_superuser=True)
            | Q(groups__permissions__in=_permissions(permission))
            | Q(user_permissions__in=_permissions(permission))
        )
        .distinct()
        .order_by("email")
    )
    return list(users.values_list("email", flat=True))


def _permissions(condition):
    from django.contrib.auth.models import Permission

    return Permission.objects.filter(condition)


def send_staff_digest(*, today=None):
    """Email staff the requests due within five working days, the overdue ones, and policy-after-statutory.

    Staff-only: references, types, states and dates, never a requester's name or email. Nothing is sent
    when there is nothing to report. Returns (overdue, due soon, flagged, recipients).
    """
    from django.core import mail
    from django.template.loader import render_to_string

    from dsr_requests import selectors

    today = today or timezone.localdate()
    sections = []
    for title, queryset, flag in (
        (_("Overdue"), selectors.overdue(today), False),
        (_("Due within five working days"), selectors.due_soon(today), False),
        (_("Policy date after the statutory date"), selectors.policy_after_statutory(), True),
    ):
        total = queryset.count()
        rows = list(queryset.select_related("assignee").order_by("effective_due_on", "pk")[:DIGEST_ROWS])
        sections.append(
            {"title": title, "total": total, "rows": rows, "more": total - len(rows), "flag": flag}
        )
    counts = tuple(section["total"] for section in sections)
    recipients = digest_recipients()
    if not any(counts) or not recipients:
        return (*counts, 0)
    context = {"today": today, "sections": sections, "base_url": settings.APP_BASE_URL.rstrip("/")}
    subject = str(
        _("Rights requests: %(overdue)d overdue, %(soon)d due soon")
        % {"overdue": counts[0], "soon": counts[1]}
    )
    text = render_to_string("emails/staff/digest.txt", context)
    html = render_to_string("emails/staff/digest.html", context)
    with mail.get_connection() as connection:
        for address in recipients:
            message = mail.EmailMultiAlternatives(subject, text, to=[address], connection=connection)
            message.attach_alternative(html, "text/html")
            message.send()
    return (*counts, len(recipients))


# --- Lost status links ------------------------------------------------------------------------------


@sensitive_variables("email")
def resend_links(*, email, actor=REQUESTER):
    """Email a person fresh links to each of their requests; returns how many requests were found.

    Only the SHA-256 of a status token is stored, so a lost link cannot be sent again: each confirmed
    request gets a new token instead, which also retires the old link (it may be in a mailbox the person
    no longer trusts). Unconfirmed requests get their confirmation link again. The caller must show the
    same page whatever this returns, so the form never tells whether an address has requests.
    """
    found = 0
    matches = RightsRequest.objects.filter(
        email_hash=tokens.email_blind_index(email),
        erased_at__isnull=True,  # a tombstone has no address
    ).exclude(email_hash="")
    for rights_request in matches.order_by("received_at"):
        with transaction.atomic():
            locked = _lock(rights_request)
            if locked.state == S.SUBMITTED:
                queue_requester_email(
                    rights_request=locked, event="confirm_reminder", **_confirmation_email_context(locked)
                )
            elif locked.status_token_hash:
                token, locked.status_token_hash = tokens.new_status_token()
                locked.save(update_fields=["status_token_hash", "updated_at"])
                _event(
                    locked,
                    actor=actor,
                    note=_("A new status page link was sent; the old one no longer works"),
                )
                queue_requester_email(
                    rights_request=locked,
                    event="status_link",
                    status_url=emails.absolute_url("dsr_requests:status", token=token),
                )
            else:
                continue
            found += 1
    return found


# --- Atlassian account closure ---
# The account proof binds an Atlassian account ID to a request. registrations/personal_data.py reports
# these IDs to Atlassian and, for an account Atlassian reports closed, calls the hook below; both are
# registered in apps.py.


def stored_atlassian_accounts():
    """Each bound account ID with the site it was bound on and when its requests last changed.

    Rows of ``(account_id, updated_at, site_client_key)``, one per account and site. The request's
    ``updated_at`` is never earlier than the binding, so Atlassian is never told we saw an older profile
    than we did (and ``updated`` needs nothing from us anyway: no profile data is kept).
    """
    from django.db.models import Max  # kept here: this section is appended to the module

    return (
        RightsRequest.objects.exclude(account_id="")
        .values("account_id", "site_client_key")
        .annotate(last_updated=Max("updated_at"))
        .values_list("account_id", "last_updated", "site_client_key")
        .order_by()
    )


def erase_closed_atlassian_account(*, account_id, actor=SYSTEM):
    """Erase the data tied to an Atlassian account Atlassian reports closed; returns the requests changed.

    Only the account ID is tied to the account alone. The rest of a request (the requester's own name,
    email and answers, the site the proof came from, the record that the proof passed) belongs to the
    person who asked or to the site, and the request may still have to be answered; it stays. The
    event says what happened without repeating the ID.
    """
    erased = 0
    for pk in RightsRequest.objects.filter(account_id=account_id).values_list("pk", flat=True):
        with transaction.atomic():
            locked = RightsRequest.objects.select_for_update().get(pk=pk)
            if locked.account_id != account_id:
                continue  # changed since the list was read
            locked.account_id = ""
            locked.save(update_fields=["account_id", "updated_at"])
            ledger.record_account_erasure(account_id=account_id, actor=actor)
            _event(locked, actor=actor, note=_("Atlassian account closed: account data erased"), public=False)
            erased += 1
    return erased


# --- Fulfilment ---------------------------------------------------------------------------------------
#
# An approved request is carried out by a background job (tasks.fulfil_request) that calls
# ``run_fulfilment``. The job is a list of named steps per request type; each step records itself as
# done in ``FulfilmentRun.steps`` in the same transaction as its effect, so a rerun after a crash skips
# what is done and repeats nothing (no second file, email or erasure). A job that fails
# DSR_FULFILMENT_MAX_FAILURES times goes back to staff (fulfilling -> approved) with the error on the
# timeline (staff only).

RUN_DONE = "done"
RUN_RETRY = "retry"
RUN_FAILED = "failed"
RUN_SKIPPED = "skipped"


class ReceiptNotSent(Exception):
    """The erasure receipt is not delivered yet; the tombstone waits for it (the job retries)."""


def subject_for(rights_request):
    """The data subject of a request: its verified email, account, and site when site-scoped."""
    from dsr_requests.models import Concerns
    from dsr_requests.providers import Subject

    site_scoped = rights_request.concerns == Concerns.SITE and rights_request.site_client_key
    return Subject(
        email=rights_request.email,
        email_hash=rights_request.email_hash,
        account_id=rights_request.account_id,
        site_client_key=rights_request.site_client_key if site_scoped else "",
        site_url=rights_request.verified_site_url if site_scoped else "",
        exclude_reference=rights_request.reference,
    )


def fulfilment_steps(rights_request):
    """The named steps that carry out ``rights_request``, in order (deterministic, so reruns match)."""
    from dsr_requests import providers

    kind = rights_request.request_type
    if kind in (RequestType.REVIEW, RequestType.COPY):
        return ["export_zip", "notify_export", "finish"]
    if kind == RequestType.TRANSFER:
        return ["export_json", "notify_transfer", "finish"]
    if kind == RequestType.PROCESSING:
        return ["notify_processing", "finish"]
    if kind == RequestType.CHANGE:
        keys = sorted(set(rights_request.rectifications.values_list("provider", flat=True)))
        return [*(f"rectify:{key}" for key in keys), "notify_changed", "finish"]
    return [*(f"erase:{p.key}" for p in providers.all_providers()), "receipt", "finish"]


def _begin_fulfilment_run(locked):
    """Create (or re-arm, after a failure went back to staff) the run, and queue the job on commit."""
    from dsr_requests.models import FulfilmentRun, RunStatus

    run, created = FulfilmentRun.objects.get_or_create(request=locked)
    if not created:
        run.status = RunStatus.RUNNING
        run.failures = 0
        run.last_error = ""
        run.finished_at = None
        run.save(update_fields=["status", "failures", "last_error", "finished_at"])
    transaction.on_commit(lambda: enqueue_fulfilment(locked.pk))
    return run


def enqueue_fulfilment(request_id, *, run_after=None):
    """Queue the fulfilment job of a request (``run_after`` when the backend can defer)."""
    from dsr_requests import tasks  # tasks call services; import here to avoid a cycle

    task = tasks.fulfil_request
    if run_after is not None and task.get_backend().supports_defer:
        task = task.using(run_after=run_after)
    task.enqueue(request_id)


def _mark_done(run, step, **result):
    """Record ``step`` as done (call in the transaction that made its effect)."""
    run.steps[step] = {"done_at": timezone.now().isoformat(), **result}
    run.heartbeat_at = timezone.now()
    run.save(update_fields=["steps", "heartbeat_at"])


def _heartbeat(run_id):
    """Let ``dsr_resume_fulfilment`` see that a long step is still alive."""
    from dsr_requests.models import FulfilmentRun

    FulfilmentRun.objects.filter(pk=run_id).update(heartbeat_at=timezone.now())


def run_fulfilment(*, request_id):
    """Carry out every step not yet done; returns RUN_DONE, RUN_RETRY, RUN_FAILED or RUN_SKIPPED.

    Safe to call any number of times: a request not in ``fulfilling``, a run already finished or
    failed, or a run another worker is working on (its heartbeat is fresh) is skipped. A failure
    clears the heartbeat, so the retry may claim the run at once.
    """
    from dsr_requests.models import FulfilmentRun, RunStatus

    now = timezone.now()
    with transaction.atomic():
        run = FulfilmentRun.objects.select_for_update().filter(request_id=request_id).first()
        if run is None or run.status != RunStatus.RUNNING or run.request.state != S.FULFILLING:
            return RUN_SKIPPED
        if run.heartbeat_at and run.heartbeat_at > now - timedelta(
            minutes=settings.DSR_FULFILMENT_STALE_MINUTES
        ):
            return RUN_SKIPPED  # another worker holds it (a duplicate job from a resume)
        run.attempts += 1
        run.heartbeat_at = timezone.now()
        run.save(update_fields=["attempts", "heartbeat_at"])
    try:
        for step in fulfilment_steps(run.request):
            if step not in run.steps:
                _run_step(run, step)
    except Exception as exc:  # any failure is recorded and retried; the run never dies silently
        logger.warning("fulfilment of request %s failed at an attempt: %s", request_id, type(exc).__name__)
        return _record_failure(run.pk, exc)
    return RUN_DONE


def _record_failure(run_id, exc):
    """Count a failure; at the limit, send the request back to staff with the error on its timeline."""
    from dsr_requests.models import FulfilmentRun, RunStatus

    # The message helps staff see what broke, but may quote data (an address an SMTP server refused):
    # it goes through the log filter's redaction, and a tombstone blanks it.
    error = redact(f"{type(exc).__name__}: {exc}")[:300]
    with transaction.atomic():
        run = FulfilmentRun.objects.select_for_update().get(pk=run_id)
        run.failures += 1
        run.last_error = error
        run.heartbeat_at = None
        fields = ["failures", "last_error", "heartbeat_at"]
        outcome = RUN_RETRY
        if run.failures >= settings.DSR_FULFILMENT_MAX_FAILURES:
            run.status = RunStatus.FAILED
            run.finished_at = timezone.now()
            fields += ["status", "finished_at"]
            locked = _lock(run.request)
            if locked.state == S.FULFILLING:
                note = _(
                    "Fulfilment failed %(count)d times and is back with staff. Last error: %(error)s"
                ) % {
                    "count": run.failures,
                    "error": error,
                }
                _transition(locked, to_state=S.APPROVED, actor=SYSTEM, note=note, public=False)
            outcome = RUN_FAILED
        run.save(update_fields=fields)
    return outcome


def _run_step(run, step):
    """Run one step; each handler marks the step done in the transaction of its effect."""
    name, _sep, arg = step.partition(":")
    handlers = {
        "export_zip": lambda: _step_export(run, step, kind="zip"),
        "export_json": lambda: _step_export(run, step, kind="json"),
        "notify_export": lambda: _step_notify(run, step, "export_ready"),
        "notify_transfer": lambda: _step_notify_transfer(run, step),
        "notify_processing": lambda: (
            require_processing_register(request_type=run.request.request_type),
            _step_notify(run, step, "processing_answer"),
        ),
        "rectify": lambda: _step_rectify(run, step, arg),
        "notify_changed": lambda: _step_notify(run, step, "changed"),
        "erase": lambda: _step_erase(run, step, arg),
        "receipt": lambda: _step_receipt(run, step),
        "finish": lambda: _step_finish(run, step),
    }
    handlers[name]()


def processing_register():
    """The processing register, in order: what a processing answer and every export README say."""
    from dsr_requests.models import ProcessingActivity

    return list(ProcessingActivity.objects.all())


def _step_export(run, step, *, kind):
    """Write the export file (encrypted, deterministic name), then record it and the step together."""
    from dsr_requests import exports, providers
    from dsr_requests.models import DataExport

    rights_request = run.request
    require_processing_register(request_type=rights_request.request_type)
    file_name = f"{rights_request.reference}-{kind}.export"
    size, sha256, records = exports.write_export(
        file_name,
        kind=kind,
        rights_request=rights_request,
        subject=subject_for(rights_request),
        providers=providers.all_providers(),
        activities=processing_register(),
        progress=lambda _count: _heartbeat(run.pk),
    )
    with transaction.atomic():
        export, _created = DataExport.objects.update_or_create(
            request=rights_request,
            kind=kind,
            defaults={
                "file_name": file_name,
                "size": size,
                "sha256": sha256,
                "records": records,
                "expires_at": timezone.now() + timedelta(days=settings.DSR_EXPORT_VALID_DAYS),
                "purged_at": None,
            },
        )
        _event(
            rights_request,
            actor=SYSTEM,
            note=_("Export prepared: %(records)d records.") % {"records": records},
            public=False,
        )
        _mark_done(run, step, export_id=export.pk)


def _step_notify(run, step, event, **context):
    """Queue one requester email and record the step, in one transaction (so it is sent once)."""
    with transaction.atomic():
        locked = _lock(run.request)
        context.update(_notify_context(locked, event))
        queue_requester_email(rights_request=locked, event=event, **context)
        _mark_done(run, step)


def _notify_context(rights_request, event):
    """What each fulfilment email shows."""
    if event == "export_ready":
        export = rights_request.exports.get(kind="zip")
        return {"expires_at": export.expires_at, "code_minutes": settings.DSR_DOWNLOAD_CODE_TTL_MINUTES}
    if event == "processing_answer":
        return {"activities": processing_register()}
    if event == "changed":
        from dsr_requests import providers

        return {
            "changes": [
                {"provider": providers.get(r.provider).title, "field": r.field, "value": r.new_value}
                for r in rights_request.rectifications.exclude(applied_at=None)
            ]
        }
    return {}


def _step_notify_transfer(run, step):
    """Email the one-time link to the transfer's recipient: the requester, or the organisation."""
    from dsr_requests.models import TransferTo

    with transaction.atomic():
        locked = _lock(run.request)
        export = locked.exports.select_for_update().get(kind="json")
        token, token_hash = tokens.new_status_token()
        export.link_token_hash = token_hash
        export.link_used_at = None
        export.save(update_fields=["link_token_hash", "link_used_at"])
        to_organisation = locked.transfer_to == TransferTo.ORGANISATION and locked.transfer_email
        queue_requester_email(
            rights_request=locked,
            event="transfer_link",
            to=locked.transfer_email if to_organisation else None,
            link_url=emails.absolute_url("dsr_requests:transfer", token=token),
            expires_at=export.expires_at,
            to_organisation=bool(to_organisation),
            **({"name": ""} if to_organisation else {}),
        )
        note = (
            _("The transfer link was sent to the receiving organisation.")
            if to_organisation
            else _("The transfer link was sent to you.")
        )
        _event(locked, actor=SYSTEM, note=note, public=True)
        if to_organisation:
            # The requester would otherwise hear nothing: the only email went to the organisation.
            queue_requester_email(
                rights_request=locked,
                event="completed",
                note=_(
                    "We sent a one-time link to your data to the organisation you named. The link works "
                    "once and expires on %(date)s."
                )
                % {"date": date_format(timezone.localtime(export.expires_at), "DATE_FORMAT")},
            )
        _mark_done(run, step, recipient="organisation" if to_organisation else "requester")


def _step_rectify(run, step, provider_key):
    """Apply the corrections staff recorded for one provider."""
    from dsr_requests import providers

    with transaction.atomic():
        locked = _lock(run.request)
        corrections = list(locked.rectifications.select_for_update().filter(provider=provider_key))
        changed = providers.get(provider_key).rectify(
            subject_for(locked), {c.field: c.new_value for c in corrections}
        )
        locked.rectifications.filter(provider=provider_key).update(applied_at=timezone.now())
        _mark_done(run, step, changed=changed)


def _step_erase(run, step, provider_key):
    """Erase the subject's data held by one provider, and keep what was erased for the receipt."""
    from dsr_requests import providers

    provider = providers.get(provider_key)
    with transaction.atomic():
        locked = _lock(run.request)
        erasure = provider.erase(subject_for(locked))
        _mark_done(run, step, title=str(provider.title), erased=erasure.erased, kept=erasure.kept)


def erasure_receipt(run):
    """The receipt of an erasure: per provider what and how many, when, and who approved it."""
    from datetime import datetime

    from dsr_requests import providers

    rights_request = run.request
    lines = []
    for provider in providers.all_providers():
        done = run.steps.get(f"erase:{provider.key}")
        if done:
            lines.append(
                {
                    "title": done["title"],
                    "erased": done["erased"],
                    "kept": done["kept"],
                    "at": datetime.fromisoformat(done["done_at"]),
                    "holds_personal_data": provider.holds_personal_data,
                }
            )
    return {
        "providers": lines,
        "approved_by": [
            staff_name_for_requester(user)
            for user in (rights_request.approved_by, rights_request.erasure_approved_by)
            if user is not None
        ],
    }


def staff_name_for_requester(user):
    """How a staff member is named to a requester: their full name, never a login (often an email address)."""
    return user.get_full_name() or str(_("Privacy team member no. %(number)d") % {"number": user.pk})


def _step_receipt(run, step):
    """Queue the receipt email (sent before the tombstone removes the address it goes to)."""
    with transaction.atomic():
        locked = _lock(run.request)
        email = queue_requester_email(
            rights_request=locked, event="erasure_receipt", receipt=erasure_receipt(run)
        )
        _mark_done(run, step, email_id=email.pk)


def _step_finish(run, step):
    """Complete the request; a deletion also becomes a tombstone, once its receipt is delivered."""
    from dsr_requests.models import OutboundEmail

    is_delete = run.request.request_type == RequestType.DELETE
    if is_delete:
        email_id = run.steps["receipt"]["email_id"]
        deliver_email(email_id=email_id)
        if OutboundEmail.objects.filter(pk=email_id, status=EmailStatus.PENDING).exists():
            raise ReceiptNotSent("the erasure receipt could not be sent yet")
    from dsr_requests.models import RunStatus

    with transaction.atomic():
        locked = _lock(run.request)
        if is_delete:
            ledger.record_request_erasure(rights_requests=[locked], reference=locked.reference, actor=SYSTEM)
            _tombstone(locked)
            note = _("Your personal data has been erased; we emailed you the receipt.")
        else:
            note = _("Done.")
        late = days_past_statutory_date(locked)
        _transition(locked, to_state=S.COMPLETED, actor=SYSTEM, note=note, public=True)
        # Staff confirmed the lateness when they started the job; the record says when it really ended.
        _record_late(locked, actor=SYSTEM, late=late, action=_("Completed"))
        run.status = RunStatus.DONE
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at"])
        _mark_done(run, step)


def tombstone_request(*, request_id):
    """Erase a request's personal data, keeping reference, type, dates, outcome and the email hash."""
    with transaction.atomic():
        locked = RightsRequest.objects.select_for_update().get(pk=request_id)
        _tombstone(locked)
        return locked


def _tombstone(locked):
    """Blank every personal field of a locked request and what hangs off it; delete its export files.

    The blind-index hash stays, so a later request from the same address can be told its data was
    erased; free text that staff or the requester wrote (notes, reasons, answers) is removed, since it
    may name the person.
    """
    from dsr_requests import exports

    erased_text = str(_("(erased)"))
    for name in (
        "name",
        "email",
        "details",
        "site_url",
        "transfer_email",
        "account_id",
        "site_client_key",
        "verified_site_url",
        "agent_name",
        "agent_email",
    ):
        setattr(locked, name, "")
    if locked.rejection_reason:
        locked.rejection_reason = erased_text
    if locked.extension_reason:
        locked.extension_reason = erased_text
    locked.erased_at = timezone.now()
    locked.save()
    _drop_proof_material(locked)
    locked.account_codes.all().delete()
    locked.questions.all().delete()
    locked.rectifications.all().delete()
    locked.events.update(note="")
    locked.identity_checks.update(note="")
    FulfilmentRun.objects.filter(request=locked).update(last_error="")
    locked.emails.update(to="", body_text="", body_html="")
    live = locked.exports.filter(purged_at=None)
    if live.exists():  # a purged export's file and codes are gone already
        _drop_export_files(live, storage=exports.export_storage())
    live.update(purged_at=timezone.now(), link_token_hash=None)


def _drop_export_files(queryset, *, storage):
    """Delete the files and the download codes of the exports in ``queryset``: one storage for all of
    them (building an S3 client per file would cost more than the deletes), one query for the codes."""
    from dsr_requests.models import DownloadCode

    for file_name in queryset.values_list("file_name", flat=True):
        storage.delete(file_name)
    DownloadCode.objects.filter(export__in=queryset).delete()


def resume_stalled_fulfilment(*, now=None):
    """Queue again every running fulfilment with no sign of life for DSR_FULFILMENT_STALE_MINUTES.

    A worker killed mid-job leaves its task marked running forever; this is how such a request gets
    finished. Returns the references queued.
    """
    from dsr_requests.models import FulfilmentRun, RunStatus

    now = now or timezone.now()
    cutoff = now - timedelta(minutes=settings.DSR_FULFILMENT_STALE_MINUTES)
    stalled = FulfilmentRun.objects.filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff),
        status=RunStatus.RUNNING,
        request__state=S.FULFILLING,
    ).select_related("request")
    references = []
    for run in stalled:
        enqueue_fulfilment(run.request_id)
        references.append(run.request.reference)
    return references


# --- Fulfilment: downloads ---------------------------------------------------------------------------


def downloadable_export(*, rights_request, kind="zip", now=None):
    """The request's export of ``kind`` while it may still be downloaded, else None."""
    now = now or timezone.now()
    return rights_request.exports.filter(kind=kind, purged_at=None, expires_at__gt=now).first()


def send_download_code(*, rights_request, actor=REQUESTER, now=None):
    """Email the requester a one-time code that unlocks their copy; earlier unused codes stop working."""
    from dsr_requests.models import DownloadCode

    now = now or timezone.now()
    with transaction.atomic():
        locked = _lock(rights_request)
        export = downloadable_export(rights_request=locked, now=now)
        if export is None:
            raise ActionRefused(_("There is no copy to download, or its download period has ended."))
        export.codes.filter(used_at__isnull=True).delete()
        code, code_hash = tokens.new_download_code()
        DownloadCode.objects.create(
            export=export,
            code_hash=code_hash,
            expires_at=now + timedelta(minutes=settings.DSR_DOWNLOAD_CODE_TTL_MINUTES),
        )
        queue_requester_email(
            rights_request=locked,
            event="download_code",
            code=code,
            minutes=settings.DSR_DOWNLOAD_CODE_TTL_MINUTES,
        )
        _event(locked, actor=actor, note=_("Download code emailed"), public=False)


def _log_download(locked, export, channel, *, actor, now):
    from dsr_requests.models import ExportDownload

    ExportDownload.objects.create(export=export, channel=channel)
    _event(
        locked,
        actor=actor,
        note=_("Your data was downloaded (%(when)s UTC).") % {"when": now.strftime("%Y-%m-%d %H:%M")},
        public=True,
    )


class ExportUnavailable(Exception):
    """An export's file cannot be read now: its storage did not answer (``temporary``: try again in a
    while) or the file is gone or damaged (staff must prepare it again). The code or link stays unused."""

    def __init__(self, *, temporary):
        super().__init__("export storage unreachable" if temporary else "export file missing or damaged")
        self.temporary = temporary


def _open_for_download(export):
    """Open the export's file and decrypt its first frame before a code or link is used up, so a file
    that cannot be sent costs the requester nothing; returns an ``exports.PlainStream``."""
    from dsr_requests import exports

    try:
        return exports.open_plain(export.file_name)
    except exports.ExportMissing:
        logger.error("export file missing for request id %s", export.request_id)
        raise ExportUnavailable(temporary=False) from None
    except exports.ExportError as exc:  # damaged, or no key in FERNET_KEYS opens it: staff prepare it again
        logger.error("export file unreadable for request id %s: %s", export.request_id, exc)
        raise ExportUnavailable(temporary=False) from None
    except shared_storage.STORAGE_ERRORS as exc:
        logger.warning("export storage unreachable (%s)", type(exc).__name__)
        raise ExportUnavailable(temporary=True) from None


def _close(stream):
    if stream is not None:
        stream.close()


@sensitive_variables("code")
def redeem_download_code(*, rights_request, code, actor=REQUESTER, now=None):
    """Use up a download code of this request and log the download; returns ``(export, plain stream)``.

    Raises ``ActionRefused`` for a code that does not work and ``ExportUnavailable`` when the file cannot
    be read, both before anything is used up.
    """
    from dsr_requests.models import DownloadCode, ExportDownload

    now = now or timezone.now()
    stream = None
    try:
        with transaction.atomic():
            locked = _lock(rights_request)
            found = (
                DownloadCode.objects.select_for_update()
                .filter(code_hash=tokens.download_code_hash(code), export__request=locked)
                .select_related("export")
                .first()
            )
            if found is None:
                raise ActionRefused(_("This code is not valid. Check it, or ask for a new one."))
            if found.used_at is not None:
                raise ActionRefused(_("This code has already been used. Ask for a new one."))
            if found.expires_at <= now:
                raise ActionRefused(_("This code has expired. Ask for a new one."))
            if downloadable_export(rights_request=locked, now=now) is None:
                raise ActionRefused(_("The download period of your copy has ended."))
            stream = _open_for_download(found.export)
            found.used_at = now
            found.save(update_fields=["used_at"])
            _log_download(locked, found.export, ExportDownload.Channel.CODE, actor=actor, now=now)
    except BaseException:
        _close(stream)  # opened, then the transaction failed: nothing will read it
        raise
    return found.export, stream


def transfer_export_for_link(token, *, now=None):
    """The transfer export a link's token names, if the link is unused and unexpired; else ActionRefused."""
    from dsr_requests.models import DataExport

    now = now or timezone.now()
    export = (
        DataExport.objects.filter(link_token_hash=tokens.status_token_hash(token))
        .select_related("request")
        .first()
    )
    if export is None:
        raise ActionRefused(_("This link is not valid."))
    if export.link_used_at is not None:
        raise ActionRefused(_("This link has already been used; each transfer link works once."))
    if export.purged_at is not None or export.expires_at <= now:
        raise ActionRefused(_("This link has expired."))
    return export


@sensitive_variables("token")
def redeem_transfer_link(*, token, actor=REQUESTER, now=None):
    """Use up a transfer link and log the download; returns ``(export, plain stream)``; refusals and an
    unreadable file as in ``redeem_download_code``."""
    from dsr_requests.models import DataExport, ExportDownload

    now = now or timezone.now()
    stream = None
    try:
        with transaction.atomic():
            export = transfer_export_for_link(token, now=now)
            locked = _lock(export.request)
            export = DataExport.objects.select_for_update().get(pk=export.pk)
            if export.link_used_at is not None:
                raise ActionRefused(_("This link has already been used; each transfer link works once."))
            stream = _open_for_download(export)
            export.link_used_at = now
            export.save(update_fields=["link_used_at"])
            _log_download(locked, export, ExportDownload.Channel.LINK, actor=actor, now=now)
    except BaseException:
        _close(stream)
        raise
    return export, stream


# --- Fulfilment: corrections -------------------------------------------------------------------------


def check_rectification(*, rights_request, provider, field):
    """Refuse (ActionRefused) a correction the request or the provider cannot take; the form uses it too."""
    from dsr_requests import providers

    if rights_request.request_type != RequestType.CHANGE or rights_request.state not in (
        S.IN_REVIEW,
        S.APPROVED,
    ):
        raise ActionRefused(_("Corrections are recorded on a change request in review or approved."))
    try:
        target = providers.get(provider)
    except KeyError:
        raise ActionRefused(_("Unknown data source.")) from None
    if field not in target.rectifiable_fields:
        raise ActionRefused(
            _("%(source)s can correct only: %(fields)s.")
            % {"source": target.title, "fields": ", ".join(target.rectifiable_fields) or "-"}
        )


@transaction.atomic
def record_rectification(*, rights_request, actor, provider, field, new_value):
    """Record a correction for a change request, applied by the provider when the request is fulfilled."""
    from dsr_requests.models import Rectification

    _require(actor, "fulfil_request")
    locked = _lock(rights_request)
    check_rectification(rights_request=locked, provider=provider, field=field)
    new_value = _required_text(new_value, _("Give the corrected value."))
    correction, _created = Rectification.objects.update_or_create(
        request=locked,
        provider=provider,
        field=field,
        defaults={"new_value": new_value, "recorded_by": actor, "applied_at": None},
    )
    _event(locked, actor=actor, note=_("Correction recorded: %(field)s") % {"field": field}, public=False)
    return correction


# --- Fulfilment: retention (dsr_purge) ---------------------------------------------------------------


@dataclass
class PurgeResult:
    """What a purge removed (or, in a dry run, would remove)."""

    exports: int = 0
    documents: int = 0
    stray_files: int = 0
    requests: int = 0


def _older_than(storage, name, cutoff):
    """Whether a file was last written before ``cutoff``; a file whose age the storage cannot tell is
    kept (not stray): when in doubt, keep."""
    try:
        return storage.get_modified_time(name) < cutoff
    except NotImplementedError:
        return False


def purge(*, dry_run=False, now=None, progress=None):
    """Remove expired exports, leftover identity documents, stray export files, and old personal data.

    Personal data of requests closed more than DSR_RETENTION_MONTHS ago is erased to a tombstone. With
    ``dry_run`` nothing changes and the counts say what would. ``progress(message)`` reports each stage.
    """
    from dsr_requests import exports
    from dsr_requests.models import DataExport

    now = now or timezone.now()
    progress = progress or (lambda message: None)
    result = PurgeResult()

    storage = exports.export_storage()
    expired = DataExport.objects.filter(purged_at=None, expires_at__lte=now)
    result.exports = expired.count()
    if not dry_run:
        _drop_export_files(expired, storage=storage)
        expired.update(purged_at=now, link_token_hash=None)
    progress(f"expired exports: {result.exports}")

    leftover = IdentityDocument.objects.filter(request__state__in=FINAL_STATES)
    result.documents = leftover.count()
    if not dry_run:
        leftover.delete()
    progress(f"identity documents of closed requests: {result.documents}")

    live = set(DataExport.objects.filter(purged_at=None).values_list("file_name", flat=True))
    for name in shared_storage.list_files(storage):
        if not exports.is_export_file(name):
            continue  # not ours: a storage shared with other files keeps them
        if shared_storage.is_partial(name):
            # Left by a killed worker; one younger than a day may still be being written.
            stray = _older_than(storage, name, now - timedelta(days=1))
        else:
            # Not a live export. An hour's grace: a worker publishes the file just before it writes the
            # row, and that row may also have come after ``live`` was read.
            stray = name not in live and _older_than(storage, name, now - timedelta(hours=1))
        if stray:
            result.stray_files += 1
            if not dry_run:
                storage.delete(name)
    progress(f"stray export files: {result.stray_files}")

    cutoff = _months_before(now, settings.DSR_RETENTION_MONTHS)
    old_requests = RightsRequest.objects.filter(
        state__in=FINAL_STATES, closed_at__lt=cutoff, erased_at__isnull=True
    )
    for number, pk in enumerate(old_requests.values_list("pk", flat=True).iterator(), start=1):
        result.requests += 1
        if not dry_run:
            tombstone_request(request_id=pk)
        if number % 1000 == 0:
            progress(f"requests erased so far: {number}")
    progress(f"requests closed before {cutoff:%Y-%m-%d} erased: {result.requests}")
    return result


def _months_before(now, months):
    """The same moment ``months`` calendar months earlier (clamped to the month's last day)."""
    import calendar

    month_index = now.year * 12 + now.month - 1 - months
    year, month = divmod(month_index, 12)
    day = min(now.day, calendar.monthrange(year, month + 1)[1])
    return now.replace(year=year, month=month + 1, day=day)


def reindex_email_hashes(*, actor, batch_size=500, progress=None):
    """Recompute every request's email blind index under the current ``DSR_BLIND_INDEX_KEY``.

    For after the key changed (a leak, or moving off the ``SECRET_KEY``-derived default): without it no
    earlier request is found by email any more. Reads the encrypted email, so only requests that still
    hold one are reindexed; a tombstone keeps its old hash (its email is gone), which then simply no
    longer matches. Batches by primary key and is safe to run again. Returns ``(updated, skipped)``.
    """
    updated = skipped = 0
    last_pk = 0
    while True:
        batch = list(RightsRequest.objects.filter(pk__gt=last_pk).order_by("pk")[:batch_size])
        if not batch:
            break
        last_pk = batch[-1].pk
        changed = []
        for rights_request in batch:
            if not rights_request.email:
                skipped += 1
                continue
            fresh = tokens.email_blind_index(rights_request.email)
            if fresh != rights_request.email_hash:
                rights_request.email_hash = fresh
                changed.append(rights_request)
        RightsRequest.objects.bulk_update(changed, ["email_hash"])
        updated += len(changed)
        if progress:
            progress(updated, skipped)
    logger.info(
        "email blind index recomputed: %d updated, %d without an email, by %s", updated, skipped, actor
    )
    return updated, skipped
