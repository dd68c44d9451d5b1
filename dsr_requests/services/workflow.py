"""Staff workflow: one function per staff action (holds, rejection, approval, fulfilment, extensions,
regime changes, assignment).

Each action checks the actor's permission (the roles are groups of these permissions), locks the row,
refuses what the rules do not allow with InvalidTransition / ActionRefused / PermissionDenied before
changing anything, writes one event, and queues any requester email in the same transaction, so of two
staff acting at once exactly one succeeds and exactly one email goes out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from dsr_requests import deadlines
from dsr_requests.clock import extension_window_closes
from dsr_requests.models import (
    RejectionGround,
    RequestType,
    RightsRequest,
    StaffQuestion,
)
from dsr_requests.services._base import (
    ActionRefused,
    InvalidTransition,
    _event,
    _lock,
    _lock_for_action,
    _require,
    _required_text,
    _transition,
)
from dsr_requests.services.fulfilment import _begin_fulfilment_run
from dsr_requests.services.outbox import queue_requester_email
from dsr_requests.services.statutory import (
    _confirm_if_late,
    _fulfilment_running,
    _record_late,
    require_processing_register,
)
from dsr_requests.states import FINAL_STATES, S

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@transaction.atomic
def put_on_hold(
    *,
    rights_request: RightsRequest,
    actor: User,
    message: str,
    reason: str,
    expected_state: str | None = None,
) -> RightsRequest:
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
def resume(
    *, rights_request: RightsRequest, actor: User, note: str = "", expected_state: str | None = S.ON_HOLD
) -> RightsRequest:
    """Take a request off hold, back to the state it was held from; the due dates move by the hold."""
    _require(actor, "hold_request")
    locked = _lock_for_action(rights_request, expected_state=expected_state)
    if locked.state != S.ON_HOLD:
        raise InvalidTransition(locked, locked.state)
    _transition(locked, to_state=locked.held_from_state, actor=actor, note=note, public=False)
    return locked


@transaction.atomic
def reject(
    *,
    rights_request: RightsRequest,
    actor: User,
    reason: str,
    ground: str,
    expected_state: str | None = None,
    acknowledge_late: bool = False,
) -> RightsRequest:
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
def approve(
    *, rights_request: RightsRequest, actor: User, note: str = "", expected_state: str | None = None
) -> RightsRequest:
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
def approve_erasure(
    *, rights_request: RightsRequest, actor: User, note: str = "", expected_state: str | None = S.APPROVED
) -> RightsRequest:
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
def start_fulfilment(
    *,
    rights_request: RightsRequest,
    actor: User,
    note: str = "",
    expected_state: str | None = S.APPROVED,
    acknowledge_late: bool = False,
) -> RightsRequest:
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
def complete(
    *,
    rights_request: RightsRequest,
    actor: User,
    note: str = "",
    expected_state: str | None = S.FULFILLING,
    acknowledge_late: bool = False,
) -> RightsRequest:
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


@transaction.atomic
def extend_deadline(
    *,
    rights_request: RightsRequest,
    actor: User,
    reason: str,
    months: int | None = None,
    days: int | None = None,
    expected_state: str | None = None,
) -> RightsRequest:
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
    fields = locked.apply_due_dates()
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
def change_regime(
    *, rights_request: RightsRequest, actor: User, regime: str, expected_state: str | None = None
) -> RightsRequest:
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
    fields = locked.apply_due_dates()
    locked.save(update_fields=["regime", "updated_at", *fields])
    _event(
        locked,
        actor=actor,
        note=str(_("Regime changed from %(old)s to %(new)s.") % {"old": previous, "new": regime.label}),
        public=False,
    )
    return locked


@transaction.atomic
def assign(*, rights_request: RightsRequest, actor: User, assignee: User | None) -> RightsRequest:
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
