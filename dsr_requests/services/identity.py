"""Identity proof: email confirmation, the identity steps each request type needs, the Atlassian-account
proof code, identity documents, staff questions and the staff decision on a step.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from dsr_requests import emails, tokens
from dsr_requests.models import (
    AccountProofCode,
    CheckOutcome,
    DocumentKind,
    IdentityCheck,
    IdentityDocument,
    IdentityStep,
    RightsRequest,
    StaffQuestion,
)
from dsr_requests.services._base import (
    ActionRefused,
    _actor_fields,
    _event,
    _lock,
    _require,
    _required_text,
    _transition,
)
from dsr_requests.services.outbox import queue_requester_email
from dsr_requests.states import OPEN_STATES, REQUESTER, SYSTEM, S, outstanding_identity_steps

if TYPE_CHECKING:
    from datetime import datetime

    from django.contrib.auth.models import User

    from dsr_requests.states import Actor


def _advance_if_verified(locked: RightsRequest) -> bool:
    """Move a verifying request whose every identity requirement is met to ``in_review``."""
    if locked.state != S.VERIFYING or outstanding_identity_steps(locked):
        return False
    _transition(locked, to_state=S.IN_REVIEW, actor=SYSTEM, note=_("Identity verified"), public=True)
    # Proof is complete: a document uploaded while another step (account proof) settled it is no longer
    # needed, and the design keeps documents no longer than the identity decision.
    _drop_proof_material(locked)
    return True


def confirm_email(
    *, reference: str, actor: Actor = REQUESTER, now: datetime | None = None
) -> tuple[RightsRequest, str]:
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
        locked.status_token_hash, locked.status_token = token_hash, token
        locked.save(update_fields=["email_confirmed_at", "status_token_hash", "status_token", "updated_at"])
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


def _waiting_only_for_agent_check(rights_request: RightsRequest) -> bool:
    """Whether the person has given every proof of their own and only the agent's permission is left."""
    return outstanding_identity_steps(rights_request) == [[IdentityStep.AGENT_PERMISSION]]


def record_identity_step(
    *,
    rights_request: RightsRequest,
    step: str,
    outcome: str,
    method: str,
    actor: Actor,
    note: str = "",
) -> IdentityCheck:
    """Record the outcome of an identity step and move the request on when every requirement is met.

    Staff record the document check here: the uploaded documents are deleted in the same transaction,
    because once the decision is recorded there is no reason to keep them. The same holds for an
    authorized agent's written permission, which staff may check as soon as the request is logged.
    """
    with transaction.atomic():
        locked = _lock(rights_request)
        open_states: tuple[str, ...] = (S.VERIFYING, S.ON_HOLD)
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
DECIDED_DOCUMENTS: dict[str, str] = {
    IdentityStep.DOCUMENT: DocumentKind.IDENTITY,
    IdentityStep.AGENT_PERMISSION: DocumentKind.AGENT_PERMISSION,
}


def issue_account_code(
    *, rights_request: RightsRequest, actor: Actor = REQUESTER, now: datetime | None = None
) -> str:
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


def _same_site(claimed_url: str, site_url: str) -> bool:
    """Whether the site the requester named is the site the code came from (host match)."""
    return (urlsplit(claimed_url).hostname or "").lower() == (urlsplit(site_url).hostname or "").lower()


@sensitive_variables("code")
def redeem_account_code(
    *,
    code: str,
    client_key: str,
    site_url: str,
    account_id: str,
    actor: Actor = REQUESTER,
    now: datetime | None = None,
    method: str = "one-time code in the Connect app",
) -> RightsRequest:
    """Bind the Atlassian account and site of a Connect JWT (or a Forge invocation token) to the request
    whose code was entered.

    A code works once, before it expires, and only from the site the request named (when it named one).
    ``method`` is what the identity check records (which app the code was entered in). Returns the request.
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
            method=method,
            outcome=CheckOutcome.PASSED,
        )
        _event(locked, actor=actor, note=_("Atlassian account confirmed"))
        if _advance_if_verified(locked):
            queue_requester_email(rights_request=locked, event="identity_verified")
        return locked


MAX_DOCUMENTS_PER_REQUEST = 5


def add_identity_document(
    *, rights_request: RightsRequest, content: bytes, content_type: str, actor: Actor = REQUESTER
) -> IdentityDocument:
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


def answer_question(
    *, question: StaffQuestion, answer: str, actor: Actor = REQUESTER, now: datetime | None = None
) -> StaffQuestion:
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


def _drop_proof_material(locked: RightsRequest) -> None:
    """Delete what identity proof left behind: uploaded documents and unused codes."""
    locked.identity_documents.all().delete()
    locked.account_codes.filter(used_at__isnull=True).delete()


def record_document_check(
    *, rights_request: RightsRequest, actor: User, passed: bool, note: str
) -> IdentityCheck:
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
def open_identity_document(*, rights_request: RightsRequest, actor: User, document_id: int) -> DocumentFile:
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
