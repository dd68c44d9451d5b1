"""Deadline arithmetic against hand-worked calendars, plus properties that must hold for any date.

The expected dates below were counted by hand on a calendar (England and Wales bank holidays as published
by GOV.UK); the comments show the counting so a reader can check it without running anything.
"""

import os
import secrets
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from dsr_requests import deadlines
from dsr_requests.deadlines import (
    Extension,
    Regime,
    add_months,
    due_dates,
    extension_allowance,
    hold_calendar_days,
    hold_working_days,
    is_working_day,
    policy_due_date,
    statutory_due_date,
    working_days_between,
)

D = date


def england():
    """Settings for England and Wales, where Easter Monday is a bank holiday too."""
    return override_settings(DSR_HOLIDAY_SUBDIV="ENG")


@pytest.fixture(autouse=True)
def uk_calendar(settings):
    """Pin the calendar to UK-wide holidays so the cases do not depend on the developer's .env."""
    settings.DSR_HOLIDAY_COUNTRY = "GB"
    settings.DSR_HOLIDAY_SUBDIV = None
    settings.DSR_WORKING_DAYS = 30


# --- working days and the policy date ----------------------------------------------------------------


def test_policy_date_skips_weekends_six_weeks_from_a_monday():
    # Mon 4 Sep 2023, no bank holidays until Christmas: 30 working days = 6 whole weeks -> Mon 16 Oct.
    assert policy_due_date(D(2023, 9, 4)) == D(2023, 10, 16)


def test_policy_date_from_a_friday_is_six_weeks_later():
    assert policy_due_date(D(2023, 9, 8)) == D(2023, 10, 20)


@pytest.mark.parametrize("weekend_day", [D(2023, 9, 9), D(2023, 9, 10)])
def test_receipt_on_a_weekend_counts_from_the_monday_like_a_friday_receipt(weekend_day):
    # Day 1 is Mon 11 Sep; day 30 is Fri 20 Oct, the same as for a receipt on Fri 8 Sep.
    assert policy_due_date(weekend_day) == D(2023, 10, 20)


def test_policy_date_skips_christmas_and_new_year_substitute_days():
    # Fri 10 Dec 2021: Dec 13-17 (5), 20-24 (10); Christmas and Boxing Day fell on the weekend, observed
    # Mon 27 and Tue 28; Dec 29-31 (13); New Year's Day (Sat) observed Mon 3 Jan; Jan 4-7 (17),
    # 10-14 (22), 17-21 (27), 24-26 (30).
    assert policy_due_date(D(2021, 12, 10)) == D(2022, 1, 26)


def test_policy_date_skips_good_friday_everywhere_in_the_uk():
    # Mon 4 Mar 2024: Mar 5-8 (4), 11-15 (9), 18-22 (14), 25-28 (18), Good Friday 29 Mar, Apr 1-5 (23),
    # 8-12 (28), 15 (29), 16 (30). Easter Monday is not a bank holiday in Scotland, so not UK-wide.
    assert policy_due_date(D(2024, 3, 4)) == D(2024, 4, 16)


def test_policy_date_also_skips_easter_monday_in_england():
    with england():
        assert policy_due_date(D(2024, 3, 4)) == D(2024, 4, 17)


def test_policy_date_honours_the_working_days_setting_and_argument():
    with override_settings(DSR_WORKING_DAYS=5):
        assert policy_due_date(D(2023, 9, 4)) == D(2023, 9, 11)
    assert policy_due_date(D(2023, 9, 4), working_days=1) == D(2023, 9, 5)


def test_extra_working_days_are_added_after_the_period():
    assert policy_due_date(D(2023, 9, 4), extra_working_days=5) == D(2023, 10, 23)


@pytest.mark.parametrize("kwargs", [{"working_days": 0}, {"working_days": -3}, {"extra_working_days": -1}])
def test_policy_date_refuses_nonsense_counts(kwargs):
    with pytest.raises(ValueError):
        policy_due_date(D(2023, 9, 4), **kwargs)


def test_calendar_follows_the_configured_country():
    independence_day = D(2024, 7, 4)
    assert is_working_day(independence_day)
    with override_settings(DSR_HOLIDAY_COUNTRY="US"):
        assert not is_working_day(independence_day)
    assert is_working_day(independence_day)


def test_holiday_calendar_is_cached_per_country_subdivision_and_year():
    deadlines._public_holidays.cache_clear()
    policy_due_date(D(2023, 9, 4))
    policy_due_date(D(2023, 9, 11))
    info = deadlines._public_holidays.cache_info()
    assert info.currsize == 1
    assert info.hits > 50


def test_working_days_between_counts_after_start_up_to_and_including_end():
    assert working_days_between(D(2023, 9, 8), D(2023, 9, 11)) == 1  # Fri -> Mon
    assert working_days_between(D(2023, 9, 11), D(2023, 9, 11)) == 0
    assert working_days_between(D(2023, 9, 11), D(2023, 9, 1)) == 0


# --- the statutory date ------------------------------------------------------------------------------


@pytest.mark.parametrize("regime", [Regime.GDPR, Regime.UK_GDPR, "gdpr", "uk_gdpr"])
def test_month_regimes_use_the_same_date_next_month(regime):
    assert statutory_due_date(D(2023, 8, 14), regime=regime) == D(2023, 9, 14)


@pytest.mark.parametrize(
    ("received", "due"),
    [
        (D(2023, 1, 31), D(2023, 2, 28)),  # no 31 February: the month's last day, a Tuesday
        (D(2024, 1, 31), D(2024, 2, 29)),  # leap year
        (D(2021, 1, 31), D(2021, 3, 1)),  # last day is Sunday 28 February: roll to Monday
    ],
)
def test_31_january_plus_one_month_is_the_last_day_of_february(received, due):
    assert statutory_due_date(received, regime=Regime.UK_GDPR) == due


def test_statutory_date_on_a_saturday_rolls_to_monday():
    assert statutory_due_date(D(2023, 9, 14), regime=Regime.GDPR) == D(2023, 10, 16)


def test_receipt_on_a_saturday_still_counts_from_that_day_for_the_statutory_date():
    # ICO: the limit runs from the day of receipt, working day or not. Sat 30 Sep -> Mon 30 Oct.
    assert statutory_due_date(D(2023, 9, 30), regime=Regime.UK_GDPR) == D(2023, 10, 30)


def test_statutory_date_rolls_over_both_christmas_substitute_days():
    # Sat 27 Nov 2021 -> Mon 27 Dec (Christmas observed) -> Tue 28 (Boxing Day observed) -> Wed 29 Dec.
    assert statutory_due_date(D(2021, 11, 27), regime=Regime.GDPR) == D(2021, 12, 29)


def test_statutory_date_rolls_over_the_new_year_substitute_day():
    assert statutory_due_date(D(2021, 12, 3), regime=Regime.GDPR) == D(2022, 1, 4)


def test_statutory_date_rolls_over_easter():
    # 29 Feb 2024 -> Good Friday 29 Mar -> weekend -> Mon 1 Apr (a working day UK-wide, not in England).
    assert statutory_due_date(D(2024, 2, 29), regime=Regime.UK_GDPR) == D(2024, 4, 1)
    with england():
        assert statutory_due_date(D(2024, 2, 29), regime=Regime.UK_GDPR) == D(2024, 4, 2)


def test_ccpa_is_45_calendar_days_without_rolling():
    assert statutory_due_date(D(2024, 1, 1), regime=Regime.CCPA) == D(2024, 2, 15)
    assert statutory_due_date(D(2023, 1, 5), regime=Regime.CCPA) == D(2023, 2, 19)  # a Sunday


@pytest.mark.parametrize("regime", ["hipaa", "", None, "GDPR"])
def test_unknown_regime_is_a_value_error(regime):
    with pytest.raises(ValueError, match="unknown regime"):
        statutory_due_date(D(2024, 1, 1), regime=regime)


def test_extra_calendar_days_apply_before_rolling():
    # 14 Aug + 1 month = Thu 14 Sep; + 2 days = Sat 16 Sep -> Mon 18 Sep.
    assert statutory_due_date(D(2023, 8, 14), regime=Regime.GDPR, extra_calendar_days=2) == D(2023, 9, 18)
    with pytest.raises(ValueError):
        statutory_due_date(D(2023, 8, 14), regime=Regime.GDPR, extra_calendar_days=-1)


# --- holds -------------------------------------------------------------------------------------------


def test_hold_across_christmas_moves_policy_by_working_days_and_statutory_by_calendar_days():
    # On hold Fri 20 Dec 2024, resumed Fri 27 Dec: Dec 23, 24, 27 are working days (25 and 26 are not).
    hold = (D(2024, 12, 20), D(2024, 12, 27))
    assert hold_working_days([hold]) == 3
    assert hold_calendar_days([hold]) == 7
    # Received Mon 2 Dec 2024: Dec 3-6 (4), 9-13 (9), 16-20 (14), 23-24 (16), 27 (17), 30-31 (19),
    # New Year's Day, Jan 2-3 (21), 6-10 (26), 13-16 (30); +3 working days: 17, 20, 21 Jan.
    dates = due_dates(D(2024, 12, 2), regime=Regime.UK_GDPR, holds=[hold])
    assert policy_due_date(D(2024, 12, 2)) == D(2025, 1, 16)
    assert dates.policy == D(2025, 1, 21)
    # Thu 2 Jan 2025 + 7 calendar days = Thu 9 Jan.
    assert dates.statutory == D(2025, 1, 9)
    assert dates.effective == D(2025, 1, 9)


def test_a_hold_lifted_the_same_day_costs_nothing():
    assert hold_working_days([(D(2024, 5, 1), D(2024, 5, 1))]) == 0
    assert hold_calendar_days([(D(2024, 5, 1), D(2024, 5, 1))]) == 0


def test_holds_add_up():
    holds = [(D(2023, 9, 8), D(2023, 9, 11)), (D(2023, 9, 13), D(2023, 9, 15))]
    assert hold_working_days(holds) == 3
    assert hold_calendar_days(holds) == 5


def test_a_hold_that_ends_before_it_starts_is_refused():
    with pytest.raises(ValueError):
        hold_working_days([(D(2024, 5, 2), D(2024, 5, 1))])
    with pytest.raises(ValueError):
        hold_calendar_days([(D(2024, 5, 2), D(2024, 5, 1))])


# --- extensions --------------------------------------------------------------------------------------


def test_gdpr_extension_of_two_months_from_31_january():
    # First period ends Tue 28 Feb 2023; two further months end Sun 30 Apr = 61 calendar days later.
    # Working days in between: March 23, April 19 (Good Friday 7 Apr out) = 42.
    allowance = extension_allowance(D(2023, 1, 31), regime=Regime.UK_GDPR, months=2)
    assert allowance == Extension(calendar_days=61, working_days=42)
    dates = due_dates(D(2023, 1, 31), regime=Regime.UK_GDPR, extension=allowance)
    # Sun 30 Apr -> Mon 1 May is the Early May bank holiday -> Tue 2 May.
    assert dates.statutory == D(2023, 5, 2)
    # Base policy date Tue 14 Mar 2023 (30 working days); + 42 working days, skipping 7 Apr, 1 May and the
    # coronation holiday on 8 May, is Tue 16 May.
    assert dates.policy == D(2023, 5, 16)
    assert dates.effective == D(2023, 5, 2)


def test_gdpr_extension_of_one_month():
    allowance = extension_allowance(D(2023, 1, 31), regime=Regime.GDPR, months=1)
    assert allowance.calendar_days == 31  # 28 Feb -> 31 Mar
    assert allowance.working_days == 23


def test_ccpa_extension_is_one_further_45_days():
    allowance = extension_allowance(D(2024, 1, 1), regime=Regime.CCPA)
    # 15 Feb -> 31 Mar 2024: Feb 16 (1), 19-23 (6), 26-29 (10), Mar 1 (11), 4-8 (16), 11-15 (21),
    # 18-22 (26), 25-28 (30), Good Friday 29 Mar.
    assert allowance == Extension(calendar_days=45, working_days=30)
    assert due_dates(D(2024, 1, 1), regime=Regime.CCPA, extension=allowance).statutory == D(2024, 3, 31)


@pytest.mark.parametrize(
    ("regime", "months"),
    [
        (Regime.GDPR, None),
        (Regime.GDPR, 0),
        (Regime.GDPR, 3),
        (Regime.UK_GDPR, 3),
        (Regime.CCPA, 1),
        ("hipaa", 1),
    ],
)
def test_extensions_beyond_the_legal_limit_are_refused(regime, months):
    with pytest.raises(ValueError):
        extension_allowance(D(2024, 1, 1), regime=regime, months=months)


# --- properties --------------------------------------------------------------------------------------

any_day = st.dates(min_value=D(2000, 1, 1), max_value=D(2090, 12, 31))
day_counts = st.integers(min_value=1, max_value=250)


@given(received=any_day, working_days=day_counts)
def test_policy_date_is_always_a_working_day(received, working_days):
    assert is_working_day(policy_due_date(received, working_days=working_days))


@given(received=any_day, working_days=day_counts, more=st.integers(min_value=1, max_value=50))
def test_policy_date_is_strictly_later_for_more_days(received, working_days, more):
    fewer = policy_due_date(received, working_days=working_days)
    assert policy_due_date(received, working_days=working_days + more) > fewer
    assert policy_due_date(received, working_days=working_days, extra_working_days=more) > fewer


@given(received=any_day, working_days=day_counts)
def test_policy_date_is_never_earlier_than_receipt_plus_that_many_days(received, working_days):
    due = policy_due_date(received, working_days=working_days)
    assert due >= received + timedelta(days=working_days)
    assert working_days_between(received, due) == working_days


@given(received=any_day, regime=st.sampled_from([Regime.GDPR, Regime.UK_GDPR]))
def test_month_regime_date_is_a_working_day_on_or_after_the_month_date(received, regime):
    due = statutory_due_date(received, regime=regime)
    assert is_working_day(due)
    assert due >= add_months(received, 1)
    assert due - add_months(received, 1) < timedelta(days=7)


@given(day=any_day, months=st.integers(min_value=0, max_value=36))
def test_add_months_lands_in_the_right_month_on_the_same_or_an_earlier_date(day, months):
    later = add_months(day, months)
    assert (later.year - day.year) * 12 + later.month - day.month == months
    assert later.day == day.day or (later.day < day.day and (later + timedelta(days=1)).day == 1)


@given(
    received=any_day,
    holds=st.lists(st.tuples(any_day, st.integers(min_value=0, max_value=60)), max_size=3),
)
def test_time_on_hold_never_brings_a_date_forward(received, holds):
    intervals = [(start, start + timedelta(days=length)) for start, length in holds]
    plain = due_dates(received, regime=Regime.GDPR)
    held = due_dates(received, regime=Regime.GDPR, holds=intervals)
    assert held.policy >= plain.policy
    assert held.statutory >= plain.statutory


# --- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DSR_HOLIDAY_COUNTRY", "XX"), ("DSR_HOLIDAY_SUBDIV", "ZZ"), ("DSR_WORKING_DAYS", "thirty")],
)
def test_a_bad_calendar_setting_stops_start_up_with_one_line_naming_it(variable, value):
    root = Path(__file__).resolve().parents[2]
    env = {
        "PATH": os.environ["PATH"],
        "ENV_FILE": "",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FERNET_KEYS": Fernet.generate_key().decode(),
        "APP_BASE_URL": "https://privacy.example.com",
        variable: value,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert variable.removesuffix("_SUBDIV").removesuffix("_COUNTRY") in result.stderr
