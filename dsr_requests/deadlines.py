"""Deadlines of a rights request: the policy's working-day promise and the statutory limit of each regime.

Pure date arithmetic with no models and no database, so every counting rule can be checked against
hand-worked cases and property-based tests. The services store the results on each request, so admin
lists and filters read indexed columns instead of counting days per row.

Conventions used throughout:

- A *working day* is Monday to Friday and not a public holiday (observed substitute days included) of
  ``DSR_HOLIDAY_COUNTRY`` and, when set, ``DSR_HOLIDAY_SUBDIV``, as the ``holidays`` library knows them.
- A *hold* is a pair ``(held_on, resumed_on)``. The days that count as spent on hold are those after
  ``held_on`` up to and including ``resumed_on``, so a hold lifted the same day costs nothing and a hold from
  Monday to Tuesday costs one day. The policy date moves by the working days among them, the statutory date
  by the calendar days.
- An *extension* moves the statutory date by the calendar days it adds to the first period (GDPR and UK
  GDPR: one or two further months; CCPA: one further 45 days), and the policy date by the working days in
  that same span, so the policy promise never silently overrides an extension the requester was told of.
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


MONTH_REGIMES = frozenset({Regime.GDPR, Regime.UK_GDPR})
CCPA_PERIOD_DAYS = 45
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


def _regime(regime) -> Regime:
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


def statutory_due_date(received_on: date, *, regime, extra_calendar_days: int = 0) -> date:
    """The date the law's time limit falls due under ``regime``.

    GDPR and UK GDPR: one month as the ICO counts it (the same date next month, or that month's last day
    where there is no such date), plus ``extra_calendar_days``, rolled forward to the next working day when
    it is not one. CCPA: 45 calendar days after receipt plus ``extra_calendar_days``; the statute counts
    calendar days and does not roll. An unknown regime is a ``ValueError``.
    """
    regime = _regime(regime)
    if extra_calendar_days < 0:
        raise ValueError("extra_calendar_days must not be negative")
    if regime in MONTH_REGIMES:
        return next_working_day(add_months(received_on, 1) + timedelta(days=extra_calendar_days))
    return received_on + timedelta(days=CCPA_PERIOD_DAYS + extra_calendar_days)


@dataclass(frozen=True)
class Extension:
    """How far an extension moves each date."""

    calendar_days: int
    working_days: int


NO_EXTENSION = Extension(calendar_days=0, working_days=0)


def extension_allowance(received_on: date, *, regime, months: int | None = None) -> Extension:
    """The allowance for extending a request received on ``received_on``.

    GDPR and UK GDPR take ``months`` (1 or 2: the law allows up to two further months) counted from
    receipt, so 31 January extended by two months ends on 30 April. CCPA allows exactly one further 45
    days and takes no ``months``. Anything beyond those limits is a ``ValueError``.
    """
    regime = _regime(regime)
    if regime in MONTH_REGIMES:
        if months not in range(1, MONTH_REGIME_MAX_EXTENSION_MONTHS + 1):
            raise ValueError(
                f"a {regime.label} extension is 1 to {MONTH_REGIME_MAX_EXTENSION_MONTHS} further months"
            )
        first_end = add_months(received_on, 1)
        extended_end = add_months(received_on, 1 + months)
    else:
        if months is not None:
            raise ValueError(f"a {regime.label} extension is one further {CCPA_EXTENSION_DAYS} days")
        first_end = received_on + timedelta(days=CCPA_PERIOD_DAYS)
        extended_end = first_end + timedelta(days=CCPA_EXTENSION_DAYS)
    return Extension(
        calendar_days=(extended_end - first_end).days,
        working_days=working_days_between(first_end, extended_end),
    )


def extension_window_closes(received_on: date, *, regime, holds: Iterable[Hold] = ()) -> date:
    """The last day an extension may be granted: the end of the first period (time on hold included).

    The law requires the requester to be told of an extension within the first month (GDPR, UK GDPR) or
    the first 45 days (CCPA).
    """
    return statutory_due_date(received_on, regime=regime, extra_calendar_days=hold_calendar_days(holds))


@dataclass(frozen=True)
class DueDates:
    """The dates a request is due; ``effective`` is the earlier one, the one staff must meet."""

    policy: date
    statutory: date

    @property
    def effective(self) -> date:
        return min(self.policy, self.statutory)


def due_dates(
    received_on: date, *, regime, holds: Iterable[Hold] = (), extension: Extension = NO_EXTENSION
) -> DueDates:
    """Both due dates of a request, from its receipt, regime, completed holds and granted extension."""
    holds = list(holds)
    return DueDates(
        policy=policy_due_date(
            received_on, extra_working_days=hold_working_days(holds) + extension.working_days
        ),
        statutory=statutory_due_date(
            received_on,
            regime=regime,
            extra_calendar_days=hold_calendar_days(holds) + extension.calendar_days,
        ),
    )
