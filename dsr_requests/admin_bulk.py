"""The request list's bulk actions, made from the staff-actions registry, and the audit hook of every action.

A bulk action reports what happened to each request in one message ("3 approved; DSR-7K3M9Q skipped:
already approved by alice"): a request the action does not apply to is skipped with the registry's reason
before its service is called, and a refusal by the service (someone acted first) is reported in its words.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext as _

from dsr_requests import services, staff_actions
from security import audit
from security.models import AccessAction

REFUSALS = (services.InvalidTransition, services.ActionRefused, PermissionDenied)


def audited(request, obj, action, call):
    """Run one staff action on ``obj`` and append it to the audit, refused or not (the one hook for
    every button and bulk action)."""
    try:
        result = call()
    except Exception:
        audit.record(request, action=AccessAction.TRANSITION, obj=obj, detail=action, succeeded=False)
        raise
    audit.record(request, action=AccessAction.TRANSITION, obj=obj, detail=action)
    return result


def bulk_name(action) -> str:
    """The admin's name of the bulk action (the POSTed ``action``): ``approve_selected``, ``assign_to_me``."""
    return action.name if action.name.endswith("_me") else f"{action.name}_selected"


def run_bulk(model_admin, request, queryset, action):
    """Run ``action`` on each selected request, oldest first, and report each outcome in one message."""
    done, skipped = 0, []
    detail = f"bulk {bulk_name(action)}"
    for obj in queryset.select_related("approved_by", "erasure_approved_by").order_by("pk"):
        reason = staff_actions.why_not(action, obj, request.user)
        if reason is staff_actions.NOT_APPLICABLE:
            reason = _("not open in this state (“%(state)s”)") % {
                "state": staff_actions.worklist.staff_label(obj.state)
            }
        if reason is not None:
            skipped.append((obj.reference, str(reason)))
            continue
        data = staff_actions.ActionData(expected_state=obj.state)
        try:
            audited(
                request,
                obj,
                detail,
                lambda obj=obj, data=data: staff_actions.run(
                    action.name, rights_request=obj, actor=request.user, data=data
                ),
            )
        except REFUSALS as exc:
            skipped.append((obj.reference, str(exc) or _("You do not have permission to do this.")))
        else:
            done += 1
    parts = [action.bulk_done(done)]
    parts += [
        _("%(reference)s skipped: %(reason)s") % {"reference": ref, "reason": reason.rstrip(".")}
        for ref, reason in skipped
    ]
    level = messages.SUCCESS if not skipped else (messages.WARNING if done else messages.ERROR)
    model_admin.message_user(request, "; ".join(parts) + ".", level)


def bulk_action(action):
    """The admin action function of one registry entry (the list's "Action" menu reads its description)."""

    def act(model_admin, request, queryset):
        run_bulk(model_admin, request, queryset, action)

    act.__name__ = bulk_name(action)
    return admin.action(description=action.bulk, permissions=["view"])(act)
