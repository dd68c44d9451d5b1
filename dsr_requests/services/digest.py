"""The daily staff digest: open requests by due date, sent to staff who may see requests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from datetime import date
    from typing import Any

    from django.contrib.auth.models import Permission
    from django.db.models import QuerySet

DIGEST_ROWS = 200


def digest_recipients() -> list[str]:
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


def _permissions(condition: Q) -> QuerySet[Permission]:
    from django.contrib.auth.models import Permission

    return Permission.objects.filter(condition)


def send_staff_digest(*, today: date | None = None) -> tuple[Any, ...]:
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
