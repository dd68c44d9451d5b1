"""A request's statutory clock as it stands today: the stored dates moved on by a running hold that stops
the legal clock, the last day an extension may be granted, and how late the request is.

Read-only and below the services, so services (which refuse late actions), selectors (which list late
requests) and the admin read one rule. The stored dates themselves are set by
``RightsRequest.apply_due_dates`` from ``deadlines``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils import timezone

from dsr_requests import deadlines
from dsr_requests.states import S

if TYPE_CHECKING:
    from datetime import date

    from dsr_requests.models import RightsRequest


def statutory_clock_stops(regime: str, reason: str) -> bool:
    """Whether a hold for ``reason`` stops the legal clock under ``regime``.

    GDPR / UK GDPR: only to verify identity or clarify the request (EDPB Guidelines 01/2022; ICO, "Can we
    stop the clock?"). CCPA: never (regulations §7021(b): the 45 days run from receipt).
    """
    return regime in deadlines.MONTH_REGIMES and deadlines.HoldReason(reason).stops_statutory_clock


def extension_window_closes(rights_request: RightsRequest, today: date | None = None) -> date:
    """The last day an extension may be granted: the end of the first statutory period.

    GDPR / UK GDPR: the first month, lengthened by holds that stopped the clock (a running one included).
    CCPA: day 45 after receipt, whatever the holds (§1798.130(a)(2); regulations §7021(b)).
    """
    today = today or timezone.localdate()
    return deadlines.statutory_due_date(
        timezone.localdate(rights_request.received_at),
        regime=rights_request.regime,
        hold_calendar_days=rights_request.hold_calendar_days + running_clock_stop(rights_request, today),
    )


def running_clock_stop(rights_request: RightsRequest, today: date) -> int:
    """Calendar days so far of a running hold that stops the legal clock (0 when there is none)."""
    if rights_request.state != S.ON_HOLD or not statutory_clock_stops(
        rights_request.regime, rights_request.hold_reason
    ):
        return 0
    return max((today - timezone.localdate(rights_request.held_since)).days, 0)


def statutory_due_now(rights_request: RightsRequest, today: date | None = None) -> date | None:
    """The statutory due date as it stands today: the stored date, moved on by a running hold that stops
    the legal clock (the stored date moves only when the hold ends)."""
    today = today or timezone.localdate()
    running_stop = running_clock_stop(rights_request, today)
    if not running_stop or rights_request.statutory_due_on is None:
        return rights_request.statutory_due_on
    return deadlines.statutory_due_date(
        timezone.localdate(rights_request.received_at),
        regime=rights_request.regime,
        extra_calendar_days=rights_request.extension_calendar_days,
        hold_calendar_days=rights_request.hold_calendar_days + running_stop,
    )


def days_past_statutory_date(rights_request: RightsRequest, today: date | None = None) -> int:
    """How many calendar days today is past the request's statutory date (0 when it is not late)."""
    today = today or timezone.localdate()
    due = statutory_due_now(rights_request, today)
    return max((today - due).days, 0) if due else 0
