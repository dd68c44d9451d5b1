"""Requests that reach us by email, post or phone, logged by staff; and requests made by authorized agents.

The privacy policy tells people to email; a request may also come by post or phone. Staff log it in admin
with the date it was **received**, which starts every clock (GDPR Art. 12(3) and the ICO: "the time limit
starts from the day you receive the request"; CCPA Civ. Code §1798.130(a)(2): 45 days "from the day the
business receives the request"), not the date it was logged. From then on it is a web request: the same
confirmation email to the person's own address, the same status link once they confirm, and the same
proof of identity, given by the person themselves.

A request made by an authorized agent (CCPA regs §7063) names the agent and keeps their written
permission as an encrypted document (``IdentityDocument`` of kind ``agent_permission``). The person still
confirms their own address and proves their identity directly (§7063(a)); staff also record that they
checked the agent's permission (identity step ``agent_permission``) before the request can leave
``verifying``. The agent is sent nothing, so nothing with the person's data reaches them.
"""

import base64
from dataclasses import dataclass
from datetime import date

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from dsr_requests import deadlines, services, tokens
from dsr_requests.models import Channel, CheckOutcome, DocumentKind, IdentityDocument, IdentityStep

# The channels staff log; the web form logs itself.
LOGGED_CHANNELS = (Channel.EMAIL, Channel.POST, Channel.PHONE)
# How far back a receipt date may lie: further back is far more likely a typing error than a letter
# found in a drawer, and a request that old should be raised with the privacy lead, not logged quietly.
MAX_RECEIVED_AGE_MONTHS = 12


def earliest_received_on(today: date) -> date:
    """The earliest date received staff may log on ``today``."""
    return deadlines.add_months(today, -MAX_RECEIVED_AGE_MONTHS)


def check_received_at(received_at, *, now=None):
    """Refuse a moment of receipt in the future or more than MAX_RECEIVED_AGE_MONTHS ago (ActionRefused)."""
    now = now or timezone.now()
    if received_at > now:
        raise services.ActionRefused(_("The date received cannot be in the future."))
    earliest = earliest_received_on(timezone.localdate(now))
    if timezone.localdate(received_at) < earliest:
        raise services.ActionRefused(
            _(
                "The date received cannot be more than %(months)d months ago (before %(date)s). "
                "Check the date; a request older than that needs the privacy lead, not the log."
            )
            % {"months": MAX_RECEIVED_AGE_MONTHS, "date": earliest.isoformat()}
        )


@dataclass(frozen=True)
class AgentPermission:
    """An authorized agent's written permission: the bytes and the type proven by their first bytes."""

    content: bytes
    content_type: str

    def __repr__(self):
        return f"<AgentPermission {self.content_type}, {len(self.content)} bytes>"


@sensitive_variables("name", "email", "details", "transfer_email", "site_url", "agent_name", "agent_email")
def log_request(
    *,
    actor,
    request_type,
    name,
    email,
    channel,
    received_at,
    details="",
    site_url="",
    concerns="",
    transfer_to="",
    transfer_email="",
    country="",
    agent_name="",
    agent_email="",
    agent_permission=None,
    now=None,
):
    """Store a request staff received by email, post or phone, and email the person as for a web request.

    ``received_at`` (when it reached us) starts the policy and statutory clocks, so a request logged
    late may already be due or overdue, as it truly is. ``agent_name`` and ``agent_permission`` (an
    ``AgentPermission``, type and size already checked) mark a request made by an authorized agent.
    Needs ``log_request``; refusals raise ``ActionRefused`` / ``PermissionDenied`` and store nothing.
    """
    services.require_permission(actor, "log_request")
    if channel not in LOGGED_CHANNELS:
        raise services.ActionRefused(_("Choose how the request reached us: email, post or phone."))
    check_received_at(received_at, now=now)
    agent_name = (agent_name or "").strip()
    if bool(agent_name) != (agent_permission is not None):
        raise services.ActionRefused(
            _("A request made by an authorized agent needs the agent's name and their written permission.")
        )
    if agent_permission is not None and agent_permission.content_type not in services.DOCUMENT_EXTENSIONS:
        raise services.ActionRefused(_("The agent's permission must be a PDF, PNG or JPEG file."))
    if agent_email and tokens.email_blind_index(agent_email) == tokens.email_blind_index(email):
        # Everything, the status link included, goes to the requester's address: it must be their own.
        raise services.ActionRefused(
            _("The requester's email address must be their own, not the agent's: we write only to them.")
        )
    with transaction.atomic():
        rights_request = services.submit_request(
            request_type=request_type,
            name=name,
            email=email,
            details=details,
            site_url=site_url,
            concerns=concerns,
            transfer_to=transfer_to,
            transfer_email=transfer_email,
            country=country,
            actor=actor,
            now=now,
            channel=channel,
            received_at=received_at,
            agent_name=agent_name,
            agent_email=agent_email if agent_name else "",
        )
        if agent_permission is not None:
            IdentityDocument.objects.create(
                request=rights_request,
                kind=DocumentKind.AGENT_PERMISSION,
                content=base64.b64encode(agent_permission.content).decode("ascii"),
                content_type=agent_permission.content_type,
                size=len(agent_permission.content),
            )
    return rights_request


def record_agent_permission_check(*, rights_request, actor, passed, note):
    """Record staff's decision on an authorized agent's written permission; the document is deleted with it.

    Possible from the moment the request is logged; until it has passed, the request cannot move from
    ``verifying`` to ``in_review`` (CCPA regs §7063(a)), whatever proof the person gives.
    """
    services.require_permission(actor, "verify_identity")
    note = services.required_text(note, _("Say what you checked and why you decided so."))
    if not rights_request.by_agent:
        raise services.ActionRefused(_("This request was not made by an authorized agent."))
    return services.record_identity_step(
        rights_request=rights_request,
        step=IdentityStep.AGENT_PERMISSION,
        outcome=CheckOutcome.PASSED if passed else CheckOutcome.FAILED,
        method=str(_("Staff check of the agent's written permission")),
        actor=actor,
        note=note,
    )
