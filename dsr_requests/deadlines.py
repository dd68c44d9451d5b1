"""Deadlines of a rights request: the policy's working-day promise and the statutory limit of each regime.

Pure date arithmetic with no models and no database, so every counting rule can be checked against
hand-worked cases and property-based tests. The services store the results on each request, so admin
lists and filters read indexed columns instead of counting days per row.

Conventions used throughout:

- A *working day* is Monday to Friday and not a public holiday (observed substitute days included) of
  ``DSR_HOLIDAY_COUNTRY`` and, when set, ``DSR_HOLIDAY_SUBDIV``, as the ``holidays`` library knows them.
- A *hold* is a pair ``(held_on, resumed_on)``. The days that count as spent on hold are those after
  ``held_on`` up to and including ``resumed_on``, so a hold lifted the same day costs nothing and a hold from
  Monday to Tuesday costs one day. Every hold moves the policy date by the working days among them. Only a
  hold for a reason the regulators accept (``HoldReason.stops_statutory_clock``: verifying identity or
  clarifying the request; EDPB Guidelines 01/2022, ICO "stopping the clock") moves the statutory date, by the
  calendar days, and only under GDPR and UK GDPR: under CCPA the 45 days run from receipt whatever happens
  (CCPA regulations §7021(b)).
- An *extension* moves the statutory date by the calendar days it adds to the first period (GDPR and UK
  GDPR: one or two further months, Art. 12(3); CCPA: up to 45 further days, Civ. Code §1798.130(a)(2)), and
  the policy date by the working days in that same span, so the policy promise never silently overrides an
  extension the requester was told of.
- Under CCPA the statutory date is never later than 90 calendar days after receipt (§1798.130(a)(2)).
"""

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import holidays
from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Regime(models.TextChoices):
    """The law whose time limit applies; chosen on intake from the requester's country, or by staff."""

    GDPR = "gdpr", _("GDPR (EU/EEA)")
    UK_GDPR = "uk_gdpr", _("UK GDPR")
    CCPA = "ccpa", _("CCPA (California)")


# EU member states and the other EEA states, where the GDPR applies.
GDPR_COUNTRIES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
        "IS",
        "LI",
        "NO",
    ]
)


def regime_for_country(country: str) -> Regime:
    """The regime to start from, given the requester's ISO country code; staff can change it.

    EU/EEA: GDPR. United States: CCPA (the only US law here with a fixed answer time; staff correct it
    for a requester outside California). Anywhere else, or unknown: UK GDPR, the law Artemis, a UK
    controller, answers to in any case.
    """
    country = (country or "").strip().upper()
    if country in GDPR_COUNTRIES:
        return Regime.GDPR
    if country == "US":
        return Regime.CCPA
    return Regime.UK_GDPR


class HoldReason(models.TextChoices):
    """Why staff put a request on hold: a fixed list, because only some reasons may stop the legal clock.

    Identity verification and clarification of the request stop the GDPR / UK GDPR clock (EDPB Guidelines
    01/2022 on the right of access, paras. 157-160; ICO guidance on the right of access, "Can we stop the
    clock?"). Any other hold pauses only the policy's working-day date. Under CCPA nothing stops the clock.
    """

    IDENTITY = "identity", _("Verifying the requester's identity")
    CLARIFICATION = "clarification", _("Clarifying what the request covers")
    OTHER = "other", _("Another reason (pauses only our 30-working-day date)")

    @property
    def stops_statutory_clock(self) -> bool:
        return self in (HoldReason.IDENTITY, HoldReason.CLARIFICATION)


MONTH_REGIMES = frozenset({Regime.GDPR, Regime.UK_GDPR})
CCPA_PERIOD_DAYS = 45
# Civ. Code §1798.130(a)(2): 45 days, extendable once by 45 more: never more than 90 days from receipt.
CCPA_MAX_DAYS = 90
# The furthest each regime lets the first period be extended (GDPR Art. 12(3); CCPA Civ. Code 1798.130).
MONTH_REGIME_MAX_EXTENSION_MONTHS = 2
CCPA_EXTENSION_DAYS = 45

Hold = tuple[date, date]


@lru_cache(maxsize=512)
def _public_holidays(country: str, subdiv: str | None, year: int) -> frozenset[date]:
    """Public holidays (observed days included) falling in ``year``, cached per (country, subdiv, year).

    Neighbouring years are loaded too because a substitute day can be listed under the year of the holiday
    it replaces (a 1 January on a Saturday observed on 31 December of the year before, for example).
    """
    calendar_ = holidays.country_holidays(country, subdiv=subdiv, years=(year - 1, year, year + 1))
    return frozenset(day for day in calendar_ if day.year == year)


def _calendar_settings() -> tuple[str, str | None]:
    """The configured holiday country and subdivision, read at call time so tests can override them."""
    return settings.DSR_HOLIDAY_COUNTRY, settings.DSR_HOLIDAY_SUBDIV or None


def is_working_day(day: date) -> bool:
    """Whether ``day`` is a working day: a weekday that is not a public holiday where Artemis works."""
    if day.weekday() >= 5:
        return False
    country, subdiv = _calendar_settings()
    return day not in _public_holidays(country, subdiv, day.year)


def next_working_day(day: date) -> date:
    """``day`` itself when it is a working day, otherwise the first working day after it."""
    while not is_working_day(day):
        day += timedelta(days=1)
    return day


def add_working_days(start: date, count: int) -> date:
    """The ``count``-th working day strictly after ``start`` (``start`` itself when ``count`` is 0)."""
    if count < 0:
        raise ValueError("count must not be negative")
    day = start
    while count:
        day += timedelta(days=1)
        if is_working_day(day):
            count -= 1
    return day


def working_days_between(start: date, end: date) -> int:
    """How many working days fall after ``start`` and on or before ``end`` (0 when ``end`` <= ``start``)."""
    count = 0
    day = start + timedelta(days=1)
    while day <= end:
        count += is_working_day(day)
        day += timedelta(days=1)
    return count


def add_months(day: date, months: int) -> date:
    """The same date ``months`` later, or that month's last day where there is none (the ICO's count)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _check_hold(hold: Hold) -> Hold:
    held_on, resumed_on = hold
    if resumed_on < held_on:
        raise ValueError("a hold cannot end before it starts")
    return hold


def hold_working_days(holds: Iterable[Hold]) -> int:
    """Working days spent on hold across ``holds``: what the policy date moves by."""
    return sum(working_days_between(*_check_hold(hold)) for hold in holds)


def hold_calendar_days(holds: Iterable[Hold]) -> int:
    """Calendar days spent on hold across ``holds``: what the statutory date moves by."""
    return sum((resumed_on - held_on).days for held_on, resumed_on in map(_check_hold, holds))


def _regime(regime: str) -> Regime:
    try:
        return Regime(regime)
    except ValueError:
        raise ValueError(f"unknown regime {regime!r}; expected one of {', '.join(Regime.values)}") from None


def policy_due_date(
    received_on: date, *, working_days: int | None = None, extra_working_days: int = 0
) -> date:
    """The date the privacy policy's promise falls due.

    The ``working_days``-th working day strictly after ``received_on`` (default ``DSR_WORKING_DAYS``), plus
    ``extra_working_days`` for time on hold and extensions. Always a working day.
    """
    if working_days is None:
        working_days = settings.DSR_WORKING_DAYS
    if working_days < 1:
        raise ValueError("working_days must be at least 1")
    if extra_working_days < 0:
        raise ValueError("extra_working_days must not be negative")
    return add_working_days(received_on, working_days + extra_working_days)


def statutory_due_date(
    received_on: date, *, regime: str, extra_calendar_days: int = 0, hold_calendar_days: int = 0
) -> date:
    """The date the law's time limit falls due under ``regime``.

    GDPR and UK GDPR: one month as the ICO counts it (the same date next month, or that month's last day
    where there is no such date), plus ``extra_calendar_days`` (an extension) and ``hold_calendar_days``
    (time the clock stood still for an accepted reason), rolled forward to the next working day when it is
    not one. CCPA: 45 calendar days after receipt plus ``extra_calendar_days``, never past day 90; holds do
    not count (regulations §7021(b)); the statute counts calendar days and does not roll. An unknown regime
    is a ``ValueError``.
    """
    regime = _regime(regime)
    if extra_calendar_days < 0 or hold_calendar_days < 0:
        raise ValueError("extra_calendar_days and hold_calendar_days must not be negative")
    if regime in MONTH_REGIMES:
        extra = extra_calendar_days + hold_calendar_days
        return next_working_day(add_months(received_on, 1) + timedelta(days=extra))
    return received_on + timedelta(days=min(CCPA_PERIOD_DAYS + extra_calendar_days, CCPA_MAX_DAYS))


@dataclass(frozen=True)
class Extension:
    """How far an extension moves each date."""

    calendar_days: int
    working_days: int


NO_EXTENSION = Extension(calendar_days=0, working_days=0)


def extension_allowance(
    received_on: date, *, regime: str, months: int | None = None, days: int | None = None
) -> Extension:
    """The allowance for extending a request received on ``received_on``.

    GDPR and UK GDPR take ``months`` (1 or 2: the law allows up to two further months) counted from
    receipt, so 31 January extended by two months ends on 30 April. CCPA allows one extension of up to 45
    further days: ``days`` (default 45), and no ``months``. Anything beyond those limits is a ``ValueError``.
    """
    regime = _regime(regime)
    if regime in MONTH_REGIMES:
        if (
            days is not None
            or months is None
            or months not in range(1, MONTH_REGIME_MAX_EXTENSION_MONTHS + 1)
        ):
            raise ValueError(
                f"a {regime.label} extension is 1 to {MONTH_REGIME_MAX_EXTENSION_MONTHS} further months"
            )
        first_end = add_months(received_on, 1)
        extended_end = add_months(received_on, 1 + months)
    else:
        if months is not None or (days is not None and days not in range(1, CCPA_EXTENSION_DAYS + 1)):
            raise ValueError(f"a {regime.label} extension is 1 to {CCPA_EXTENSION_DAYS} further days")
        first_end = received_on + timedelta(days=CCPA_PERIOD_DAYS)
        extended_end = first_end + timedelta(days=CCPA_EXTENSION_DAYS if days is None else days)
    return Extension(
        calendar_days=(extended_end - first_end).days,
        working_days=working_days_between(first_end, extended_end),
    )


@dataclass(frozen=True)
class DueDates:
    """The dates a request is due; ``effective`` is the earlier one, the one staff must meet."""

    policy: date
    statutory: date

    @property
    def effective(self) -> date:
        return min(self.policy, self.statutory)


def due_dates(
    received_on: date,
    *,
    regime: str,
    holds: Iterable[Hold] = (),
    extension: Extension = NO_EXTENSION,
    clock_stopping_holds: Iterable[Hold] | None = None,
) -> DueDates:
    """Both due dates of a request, from its receipt, regime, completed holds and granted extension.

    ``holds`` are every completed hold (they move the policy date); ``clock_stopping_holds`` those for a
    reason that stops the statutory clock (default: all of ``holds``), which move the statutory date under
    GDPR and UK GDPR only.
    """
    holds = list(holds)
    stopping = holds if clock_stopping_holds is None else list(clock_stopping_holds)
    return DueDates(
        policy=policy_due_date(
            received_on, extra_working_days=hold_working_days(holds) + extension.working_days
        ),
        statutory=statutory_due_date(
            received_on,
            regime=regime,
            extra_calendar_days=extension.calendar_days,
            hold_calendar_days=hold_calendar_days(stopping),
        ),
    )
