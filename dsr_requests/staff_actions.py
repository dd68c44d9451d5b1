"""The staff actions on a rights request: one table, read by the admin, the role sync and the browser tests.

Each action is named once here: its label, the permission it needs, the role that first holds that
permission, the service it calls (with the arguments it takes from the change page's form) and when it is
allowed. The change page shows the actions allowed now and, for the others that apply to the request,
why not; the request list's bulk actions are the entries with a ``bulk`` label; ``roles.py`` gives each
role the permissions of its actions. The services check the same rules again under the row lock: this
module only decides what is offered and explains what is not.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from dsr_requests import services, staff_intake, worklist
from dsr_requests.models import EmailStatus, IdentityStep, RequestType, RightsRequest
from dsr_requests.services import FINAL_STATES, S

# The lowest role whose staff may take an action (roles.py names the groups; privacy admins hold all).
REVIEWER = "reviewer"
APPROVER = "approver"
# ``why_not`` returns this for an action that has nothing to do with the request as it stands (resume on
# a request that is not on hold): not offered and not explained, so the panel lists only what matters.
NOT_APPLICABLE = object()


@dataclass(frozen=True)
class ActionData:
    """What the change page's form sent with an action (every field optional; the services refuse blanks)."""

    text: str = ""
    expected_state: str | None = None
    acknowledge_late: bool = False
    hold_reason: str = ""
    ground: str = ""
    months: str = ""
    days: str = ""
    regime: str = ""
    assignee: str = ""

    @classmethod
    def from_post(cls, post: Mapping[str, str]) -> "ActionData":
        return cls(
            text=post.get("text", ""),
            expected_state=post.get("expected_state") or None,
            acknowledge_late=post.get("acknowledge_late") == "1",
            hold_reason=post.get("hold_reason", ""),
            ground=post.get("ground", ""),
            months=post.get("months", ""),
            days=post.get("days", ""),
            regime=post.get("regime", ""),
            assignee=post.get("assignee", ""),
        )


@dataclass(frozen=True)
class StaffAction:
    """One staff action: ``service`` is called as ``service(rights_request=..., actor=..., **arguments)``.

    ``text`` names the free-text field the page asks for ("note", "message", "reason"), if any; ``bulk``
    is the label of the request list's bulk action, when the action is offered there, and ``bulk_done``
    the "N done" words of its report; ``on_page`` is False for a bulk-only variant.
    """

    name: str
    label: Any
    permission: str
    role: str
    service: Callable
    arguments: Callable[[ActionData, Any], dict]
    why_not: Callable[[RightsRequest, Any], Any]
    text: str = ""
    bulk: Any = None
    bulk_done: Callable[[int], str] | None = None
    on_page: bool = True


@dataclass(frozen=True)
class Unavailable:
    """An action that applies to the request but cannot be taken now, and why."""

    action: StaffAction
    reason: str


# --- when each action is allowed (None: allowed; a reason; or NOT_APPLICABLE) ---------------------------


def _who(user) -> str:
    return user.get_username() if user is not None else str(_("someone"))


def _state_label(rights_request) -> str:
    return str(worklist.staff_label(rights_request.state))


def _document_open(rights_request) -> bool:
    return any(IdentityStep.DOCUMENT in g for g in services.outstanding_identity_steps(rights_request))


def _why_not_document(rights_request, user):
    if rights_request.state != S.VERIFYING or not _document_open(rights_request):
        return NOT_APPLICABLE
    return None


def _why_not_agent_permission(rights_request, user):
    if not rights_request.by_agent:
        return NOT_APPLICABLE
    steps = services.outstanding_identity_steps(rights_request)
    if not any(IdentityStep.AGENT_PERMISSION in group for group in steps):
        return NOT_APPLICABLE
    if rights_request.state not in (S.SUBMITTED, S.VERIFYING, S.ON_HOLD):
        return NOT_APPLICABLE
    return None


def _why_not_approve(rights_request, user):
    state = rights_request.state
    if state == S.IN_REVIEW:
        return None
    if rights_request.approved_by_id:
        return _("Already approved by %(who)s.") % {"who": _who(rights_request.approved_by)}
    if state in (S.SUBMITTED, S.VERIFYING):
        return _("The requester's identity is not proven yet: a request is approved once it is in review.")
    if state == S.ON_HOLD:
        return _("On hold: resume it first.")
    return _("Only a request in review can be approved; this one is “%(state)s”.") % {
        "state": _state_label(rights_request)
    }


def _why_not_approve_erasure(rights_request, user):
    if rights_request.request_type != RequestType.DELETE:
        return NOT_APPLICABLE
    if rights_request.erasure_approved_by_id:
        return _("The erasure already has its second approval, from %(who)s.") % {
            "who": _who(rights_request.erasure_approved_by)
        }
    if rights_request.state != S.APPROVED:
        return _("The second approval of an erasure comes after the first approval.")
    if rights_request.approved_by_id == user.pk:
        return _("You gave the first approval: another staff member must give the second (four eyes).")
    return None


def _why_not_start(rights_request, user):
    if rights_request.state != S.APPROVED:
        if rights_request.state in (S.FULFILLING,):
            return _("Fulfilment has already started.")
        return _("A request is carried out once it is approved; this one is “%(state)s”.") % {
            "state": _state_label(rights_request)
        }
    if rights_request.request_type == RequestType.DELETE and not rights_request.erasure_approved_by_id:
        return _(
            "Waiting for the second approval of the erasure: approved by %(who)s; another staff member "
            "must approve before the data is deleted."
        ) % {"who": _who(rights_request.approved_by)}
    return None


def _why_not_complete(rights_request, user):
    if rights_request.state != S.FULFILLING:
        return _("Only a request being carried out can be marked completed; this one is “%(state)s”.") % {
            "state": _state_label(rights_request)
        }
    if services._fulfilment_running(rights_request):
        return _("The fulfilment job is running: it completes the request itself when it ends.")
    return None


def _why_not_hold(rights_request, user):
    if rights_request.state == S.ON_HOLD:
        return NOT_APPLICABLE
    if S.ON_HOLD not in services.ALLOWED_TRANSITIONS[rights_request.state]:
        if rights_request.state == S.SUBMITTED:
            return _("The requester has not confirmed their email address: there is nobody to ask yet.")
        return _("A request that is “%(state)s” cannot go on hold.") % {"state": _state_label(rights_request)}
    return None


def _why_not_resume(rights_request, user):
    return None if rights_request.state == S.ON_HOLD else NOT_APPLICABLE


def _why_not_extend(rights_request, user):
    if rights_request.extended_at:
        return _("Already extended on %(date)s: the law allows one extension.") % {
            "date": date_format(timezone.localdate(rights_request.extended_at))
        }
    if rights_request.email_confirmed_at is None:
        return _("The email address is not confirmed, so the notice of an extension could not be sent.")
    closes = services.extension_window_closes(rights_request)
    if timezone.localdate() > closes:
        return _("Too late: an extension had to be made by %(date)s, within the first period.") % {
            "date": date_format(closes)
        }
    return None


def _why_not_reject(rights_request, user):
    if S.REJECTED in services.ALLOWED_TRANSITIONS[rights_request.state]:
        return None
    if rights_request.state == S.FULFILLING:
        return _("It is being carried out: a refusal is no longer possible.")
    return _("The requester has not confirmed their email address yet: it closes by itself if they never do.")


def _why_not_retry(rights_request, user):
    if rights_request.emails.filter(status=EmailStatus.FAILED).exists():
        return None
    return NOT_APPLICABLE


def _why_not_assign(rights_request, user):
    return None


def _why_not_change_regime(rights_request, user):
    if rights_request.extended_at:
        return _("Extended under %(regime)s: the regime can no longer change.") % {
            "regime": rights_request.get_regime_display()
        }
    return None


# --- the arguments each service takes from the form ---------------------------------------------------


def _whole_number(raw):
    """An extension length, or None when not given; anything else is a ValueError (an invalid value)."""
    return int(raw) if raw else None


def _picked_staff(data, actor):
    if not data.assignee:
        return None
    user = get_user_model().objects.filter(pk=_whole_number(data.assignee), is_staff=True, is_active=True)
    picked = user.first()
    if picked is None:
        raise services.ActionRefused(_("Requests can only be assigned to active staff."))
    return picked


def _done(singular, plural):
    return lambda count: ngettext(singular, plural, count) % {"count": count}


ACTIONS = (
    StaffAction(
        "document_passed",
        _("Identity document accepted"),
        "verify_identity",
        REVIEWER,
        services.record_document_check,
        lambda d, a: {"passed": True, "note": d.text},
        _why_not_document,
        text="note",
    ),
    StaffAction(
        "document_failed",
        _("Identity document not accepted"),
        "verify_identity",
        REVIEWER,
        services.record_document_check,
        lambda d, a: {"passed": False, "note": d.text},
        _why_not_document,
        text="note",
    ),
    StaffAction(
        "agent_permission_passed",
        _("Agent's written permission accepted"),
        "verify_identity",
        REVIEWER,
        staff_intake.record_agent_permission_check,
        lambda d, a: {"passed": True, "note": d.text},
        _why_not_agent_permission,
        text="note",
    ),
    StaffAction(
        "agent_permission_failed",
        _("Agent's written permission not accepted"),
        "verify_identity",
        REVIEWER,
        staff_intake.record_agent_permission_check,
        lambda d, a: {"passed": False, "note": d.text},
        _why_not_agent_permission,
        text="note",
    ),
    StaffAction(
        "approve",
        _("Approve"),
        "approve_request",
        APPROVER,
        services.approve,
        lambda d, a: {"expected_state": d.expected_state},
        _why_not_approve,
        bulk=_("Approve selected requests"),
        bulk_done=_done("%(count)d approved", "%(count)d approved"),
    ),
    StaffAction(
        "approve_erasure",
        _("Give second approval of the erasure"),
        "approve_erasure",
        APPROVER,
        services.approve_erasure,
        lambda d, a: {"expected_state": d.expected_state},
        _why_not_approve_erasure,
    ),
    StaffAction(
        "start_fulfilment",
        _("Start fulfilment"),
        "fulfil_request",
        APPROVER,
        services.start_fulfilment,
        lambda d, a: {"expected_state": d.expected_state, "acknowledge_late": d.acknowledge_late},
        _why_not_start,
        bulk=_("Start fulfilment of selected requests"),
        bulk_done=_done("%(count)d started", "%(count)d started"),
    ),
    StaffAction(
        "complete",
        _("Mark completed"),
        "fulfil_request",
        APPROVER,
        services.complete,
        lambda d, a: {"expected_state": d.expected_state, "acknowledge_late": d.acknowledge_late},
        _why_not_complete,
        bulk=_("Mark selected requests completed"),
        bulk_done=_done("%(count)d completed", "%(count)d completed"),
    ),
    StaffAction(
        "put_on_hold",
        _("Put on hold: ask the requester"),
        "hold_request",
        REVIEWER,
        services.put_on_hold,
        lambda d, a: {"message": d.text, "reason": d.hold_reason, "expected_state": d.expected_state},
        _why_not_hold,
        text="message",
    ),
    StaffAction(
        "resume",
        _("Resume"),
        "hold_request",
        REVIEWER,
        services.resume,
        lambda d, a: {"expected_state": d.expected_state or S.ON_HOLD},
        _why_not_resume,
    ),
    StaffAction(
        "extend_deadline",
        _("Extend the deadline"),
        "extend_deadline",
        APPROVER,
        services.extend_deadline,
        lambda d, a: {
            "reason": d.text,
            "months": _whole_number(d.months),
            "days": _whole_number(d.days),
            "expected_state": d.expected_state,
        },
        _why_not_extend,
        text="reason",
    ),
    StaffAction(
        "reject",
        _("Reject"),
        "reject_request",
        REVIEWER,
        services.reject,
        lambda d, a: {
            "reason": d.text,
            "ground": d.ground,
            "expected_state": d.expected_state,
            "acknowledge_late": d.acknowledge_late,
        },
        _why_not_reject,
        text="reason",
    ),
    StaffAction(
        "retry_emails",
        _("Send failed emails again"),
        "hold_request",
        REVIEWER,
        services.retry_failed_emails,
        lambda d, a: {},
        _why_not_retry,
    ),
    StaffAction(
        "assign",
        _("Assign"),
        "assign_request",
        REVIEWER,
        services.assign,
        lambda d, a: {"assignee": _picked_staff(d, a)},
        _why_not_assign,
    ),
    StaffAction(
        "assign_to_me",
        _("Assign to me"),
        "assign_request",
        REVIEWER,
        services.assign,
        lambda d, a: {"assignee": a},
        _why_not_assign,
        bulk=_("Assign selected requests to me"),
        bulk_done=_done("%(count)d assigned to you", "%(count)d assigned to you"),
        on_page=False,
    ),
    StaffAction(
        "change_regime",
        _("Change regime"),
        "extend_deadline",
        APPROVER,
        services.change_regime,
        lambda d, a: {"regime": d.regime, "expected_state": d.expected_state},
        _why_not_change_regime,
    ),
)
BY_NAME = {action.name: action for action in ACTIONS}
BULK_ACTIONS = tuple(action for action in ACTIONS if action.bulk)
# The refusals and answers that need confirming after the statutory date: the services' own list.
LATE_CONFIRMED = services.LATE_CONFIRMED_ACTIONS


def permissions_of(role: str) -> tuple[str, ...]:
    """The permission codenames the actions of ``role`` need (an approver also holds a reviewer's)."""
    roles = (REVIEWER,) if role == REVIEWER else (REVIEWER, APPROVER)
    return tuple(dict.fromkeys(action.permission for action in ACTIONS if action.role in roles))


def _has(user, action) -> bool:
    return user.has_perm(f"dsr_requests.{action.permission}")


def _permission_name(codename):
    return dict(RightsRequest._meta.permissions).get(codename, codename)


def why_not(action: StaffAction, rights_request, user):
    """None when ``user`` may take ``action`` now; else why not (a sentence), or NOT_APPLICABLE."""
    if rights_request.state in FINAL_STATES:
        return NOT_APPLICABLE
    reason = action.why_not(rights_request, user)
    if reason is None and not _has(user, action):
        return _("Your role does not include this (“%(permission)s”).") % {
            "permission": _permission_name(action.permission)
        }
    return reason


def page_actions(rights_request, user) -> tuple[list[StaffAction], list[Unavailable]]:
    """The change page's actions in one pass: those ``user`` may take now, and those that apply to the
    request but are not open, each with its reason."""
    available, unavailable = [], []
    for action in ACTIONS:
        if not action.on_page:
            continue
        reason = why_not(action, rights_request, user)
        if reason is None:
            available.append(action)
        elif reason is not NOT_APPLICABLE:
            unavailable.append(Unavailable(action, str(reason)))
    return available, unavailable


def available_actions(rights_request, user) -> list[StaffAction]:
    """The actions of the change page ``user`` may take on ``rights_request`` as it stands."""
    return page_actions(rights_request, user)[0]


def unavailable_actions(rights_request, user) -> list[Unavailable]:
    """The change page's actions that apply to the request but are not open now, each with its reason."""
    return page_actions(rights_request, user)[1]


def closed_reason(rights_request) -> str:
    """For a closed request, the one sentence the panel shows instead of the actions."""
    if rights_request.state not in FINAL_STATES:
        return ""
    return str(
        _("This request is closed (“%(state)s”): no workflow action can be taken, and its regime is kept.")
        % {"state": _state_label(rights_request)}
    )


def run(name: str, *, rights_request, actor, data: ActionData):
    """Call the service of action ``name`` with the form's data; raises KeyError for an unknown name."""
    action = BY_NAME[name]
    return action.service(rights_request=rights_request, actor=actor, **action.arguments(data, actor))
