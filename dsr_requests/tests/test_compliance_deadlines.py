"""Issue 14, items 1, 2 and 9: the statutory clock as a regulator checks it.

Each test names the rule it proves and cites its source; docs/compliance.md lists them.
"""

from datetime import date, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from hypothesis import given
from hypothesis import strategies as st

from dsr_requests import deadlines, roles, selectors, services, staff_actions
from dsr_requests.deadlines import HoldReason, Regime
from dsr_requests.models import OutboundEmail, RequestEvent, RequestState, RightsRequest
from dsr_requests.tests.conftest import LONDON
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory

S = RequestState
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("uk_calendar")]


@pytest.fixture
def staff():
    return StaffUserFactory(roles=[roles.PRIVACY_ADMIN])


def at(year, month, day, hour=10):
    return datetime(year, month, day, hour, tzinfo=LONDON)


def _received(regime, when, state=S.IN_REVIEW, **extra):
    return RightsRequestFactory(state=state, received_at=when, regime=regime, **extra)


def _hold(rights_request, staff, *, reason, start, end):
    with time_machine.travel(start, tick=False):
        services.put_on_hold(
            rights_request=rights_request, actor=staff, message="Please send ID.", reason=reason
        )
    with time_machine.travel(end, tick=False):
        services.resume(rights_request=rights_request, actor=staff)
    rights_request.refresh_from_db()
    return rights_request


# --- 1. CCPA ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", HoldReason.values)
def test_ccpa_a_hold_never_moves_the_45_day_statutory_date_but_moves_the_policy_date(staff, reason):
    """CCPA regulations §7021(b): the 45 days run from receipt, whatever time verification takes;
    Civ. Code §1798.130(a)(2). The policy's working-day date still pauses (the policy is ours to keep)."""
    rights_request = _received(Regime.CCPA, at(2024, 3, 4))
    before = (rights_request.statutory_due_on, rights_request.policy_due_on)
    assert before[0] == date(2024, 4, 18)  # 4 March + 45 calendar days
    held = _hold(rights_request, staff, reason=reason, start=at(2024, 3, 11), end=at(2024, 3, 25))
    assert held.statutory_due_on == date(2024, 4, 18)
    assert held.policy_due_on == deadlines.add_working_days(before[1], 10)  # 12-25 March: 10 working days
    assert held.effective_due_on == date(2024, 4, 18)


def test_ccpa_extension_of_up_to_45_days_within_the_first_45_days_is_sent_with_its_reason(
    staff, committed, mailoutbox
):
    """Civ. Code §1798.130(a)(2): one extension of up to 45 more days, with notice and the reason, within
    the first 45 days."""
    rights_request = _received(Regime.CCPA, at(2024, 3, 4))
    with time_machine.travel(at(2024, 4, 18), tick=False), committed():  # day 45: still in time
        services.extend_deadline(
            rights_request=rights_request, actor=staff, reason="Several systems to search.", days=30
        )
    rights_request.refresh_from_db()
    assert rights_request.statutory_due_on == date(2024, 5, 18)  # 45 + 30 days
    assert "Several systems to search." in mailoutbox[-1].body
    assert rights_request.extension_calendar_days == 30


@pytest.mark.parametrize("days", [0, 46, -1])
def test_ccpa_extension_longer_than_45_days_is_refused(staff, days):
    """Civ. Code §1798.130(a)(2): the extension is at most 45 further days."""
    rights_request = _received(Regime.CCPA, at(2024, 3, 4))
    with time_machine.travel(at(2024, 3, 10), tick=False), pytest.raises(services.ActionRefused):
        services.extend_deadline(rights_request=rights_request, actor=staff, reason="Busy.", days=days)
    assert RightsRequest.objects.get(pk=rights_request.pk).extended_at is None


def test_ccpa_extension_after_day_45_is_refused_with_a_clear_message_even_after_a_hold(staff):
    """Civ. Code §1798.130(a)(2) and regulations §7021(b): the window is the first 45 days from receipt;
    a hold does not lengthen it."""
    rights_request = _received(Regime.CCPA, at(2024, 3, 4))
    rights_request = _hold(
        rights_request, staff, reason=HoldReason.IDENTITY, start=at(2024, 3, 5), end=at(2024, 4, 1)
    )
    with time_machine.travel(at(2024, 4, 19), tick=False):  # day 46
        assert "extend_deadline" not in [
            a.name for a in staff_actions.available_actions(rights_request, staff)
        ]
        with pytest.raises(services.ActionRefused, match=r"Too late to extend.*2024-04-18.*day 46"):
            services.extend_deadline(rights_request=rights_request, actor=staff, reason="Busy.", days=10)
    assert RightsRequest.objects.get(pk=rights_request.pk).extended_at is None


any_day = st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31))


@given(
    received=any_day,
    extension=st.integers(min_value=0, max_value=200),
    held=st.integers(min_value=0, max_value=400),
)
def test_ccpa_statutory_date_is_never_later_than_90_days_after_receipt(received, extension, held):
    """Civ. Code §1798.130(a)(2): 45 days plus at most one 45-day extension: never past day 90, whatever
    holds and extensions happened."""
    due = deadlines.statutory_due_date(
        received, regime=Regime.CCPA, extra_calendar_days=extension, hold_calendar_days=held
    )
    assert received + timedelta(days=45) <= due <= received + timedelta(days=90)


# --- 2. GDPR / UK GDPR -------------------------------------------------------------------------------


@pytest.mark.parametrize("regime", [Regime.GDPR, Regime.UK_GDPR])
@pytest.mark.parametrize("reason", [HoldReason.IDENTITY, HoldReason.CLARIFICATION])
def test_gdpr_hold_to_verify_identity_or_clarify_stops_the_statutory_clock(staff, regime, reason):
    """EDPB Guidelines 01/2022 (right of access), and ICO guidance "Can we stop the clock?": the time
    limit waits while the controller waits for identity proof or a clarification it asked for."""
    rights_request = _received(regime, at(2024, 3, 4))
    assert rights_request.statutory_due_on == date(2024, 4, 4)
    held = _hold(rights_request, staff, reason=reason, start=at(2024, 3, 11), end=at(2024, 3, 18))
    assert held.statutory_due_on == date(2024, 4, 11)  # 7 calendar days later
    note = held.events.filter(actor_kind=RequestEvent.ActorKind.SYSTEM, public=False).last().note
    assert "stood still" in note and "2024-04-11" in note


@pytest.mark.parametrize("regime", [Regime.GDPR, Regime.UK_GDPR])
def test_gdpr_hold_for_any_other_reason_pauses_only_the_policy_date(staff, regime):
    """EDPB Guidelines 01/2022; ICO "Can we stop the clock?": only identity and clarification stop the
    statutory clock; another hold moves only our own working-day date, and staff are told so."""
    rights_request = _received(regime, at(2024, 3, 4))
    policy_before = rights_request.policy_due_on
    held = _hold(rights_request, staff, reason=HoldReason.OTHER, start=at(2024, 3, 11), end=at(2024, 3, 18))
    assert held.statutory_due_on == date(2024, 4, 4)
    assert held.policy_due_on == deadlines.add_working_days(policy_before, 5)
    note = held.events.filter(actor_kind=RequestEvent.ActorKind.SYSTEM, public=False).last().note
    assert "does not stop the legal clock" in note


@pytest.mark.parametrize("reason", ["", "waiting for a fee", "IDENTITY", None])
def test_a_hold_reason_outside_the_fixed_list_is_refused_and_changes_nothing(staff, reason):
    """EDPB Guidelines 01/2022; ICO: staff pick the reason from a fixed list, so a hold never stops the
    legal clock for a reason the regulators do not accept."""
    rights_request = _received(Regime.UK_GDPR, at(2024, 3, 4))
    with pytest.raises(services.ActionRefused, match="Choose why"):
        services.put_on_hold(rights_request=rights_request, actor=staff, message="Hm?", reason=reason)
    fresh = RightsRequest.objects.get(pk=rights_request.pk)
    assert (fresh.state, fresh.hold_reason, fresh.events.count()) == (S.IN_REVIEW, "", 0)


def test_a_regime_change_to_ccpa_drops_the_clock_stop_of_an_earlier_identity_hold(staff):
    """CCPA regulations §7021(b): under CCPA no hold counts, even one recorded while GDPR applied."""
    rights_request = _received(Regime.GDPR, at(2024, 3, 4))
    held = _hold(rights_request, staff, reason=HoldReason.IDENTITY, start=at(2024, 3, 5), end=at(2024, 3, 12))
    assert held.statutory_due_on == date(2024, 4, 11)
    with time_machine.travel(at(2024, 3, 12), tick=False):
        services.change_regime(rights_request=held, actor=staff, regime=Regime.CCPA)
    held.refresh_from_db()
    assert held.statutory_due_on == date(2024, 4, 18)


def test_gdpr_extension_window_includes_a_running_identity_hold(staff):
    """GDPR Art. 12(3): the extension is notified within the first month, and a clock stopped for
    identity proof (EDPB 01/2022; ICO) lengthens that month, even before the hold ends."""
    rights_request = _received(Regime.GDPR, at(2024, 3, 4))
    with time_machine.travel(at(2024, 3, 25), tick=False):
        services.put_on_hold(
            rights_request=rights_request, actor=staff, message="ID please.", reason=HoldReason.IDENTITY
        )
    rights_request.refresh_from_db()
    with time_machine.travel(at(2024, 4, 8), tick=False):  # past 4 April, but 14 days were on hold
        assert services.extension_window_closes(rights_request) == date(2024, 4, 18)
        assert services.days_past_statutory_date(rights_request) == 0


def test_no_extension_for_a_request_whose_address_is_not_confirmed(staff):
    """GDPR / UK GDPR Art. 12(3): the extension must be notified with its reasons; with no confirmed address
    there is nobody safe to notify, so there is no extension and nothing is sent (Art. 5(1)(f), 12(6))."""
    rights_request = _received(Regime.UK_GDPR, at(2024, 3, 4), state=S.SUBMITTED)
    assert "extend_deadline" not in [a.name for a in staff_actions.available_actions(rights_request, staff)]
    with (
        time_machine.travel(at(2024, 3, 5), tick=False),
        pytest.raises(services.ActionRefused, match="not confirmed"),
    ):
        services.extend_deadline(rights_request=rights_request, actor=staff, reason="Busy.", months=1)
    fresh = RightsRequest.objects.get(pk=rights_request.pk)
    assert fresh.extended_at is None and not OutboundEmail.objects.filter(event="extended").exists()


@pytest.mark.parametrize("event", ["rejected", "extended", "completed", "more_information", "status_link"])
def test_no_notice_of_any_kind_goes_to_an_unconfirmed_address(event):
    """GDPR Art. 5(1)(f) and 12(6): until the requester proves the address is theirs, it gets only the
    confirmation link (which carries no personal data), never a notice about the request."""
    rights_request = _received(Regime.GDPR, at(2024, 3, 4), state=S.SUBMITTED)
    with pytest.raises(services.ActionRefused, match="not confirmed"):
        services.queue_requester_email(rights_request=rights_request, event=event, reason="x", due_on=None)
    assert not OutboundEmail.objects.filter(request=rights_request).exists()


def test_the_confirmation_link_itself_still_goes_to_an_unconfirmed_address(committed, mailoutbox):
    """GDPR Art. 12(6): confirming control of the address is how identity proof starts."""
    with committed():
        services.submit_request(request_type="review", name="Ada", email="ada@example.org", country="GB")
    assert len(mailoutbox) == 1 and "Ada" not in mailoutbox[0].body


# --- 9. Flags and the date the requester is shown ---------------------------------------------------


def test_digest_flag_fires_only_where_the_policy_date_really_is_later():
    """Policy vs. law: the requester gets the earlier date, and staff are flagged exactly where the
    policy's date is the later one (so meeting only the policy would break the law)."""
    later = RightsRequestFactory(
        state=S.IN_REVIEW,
        policy_due_on=date(2025, 2, 10),
        statutory_due_on=date(2025, 2, 3),
        effective_due_on=date(2025, 2, 3),
    )
    same = RightsRequestFactory(
        state=S.IN_REVIEW,
        policy_due_on=date(2025, 2, 3),
        statutory_due_on=date(2025, 2, 3),
        effective_due_on=date(2025, 2, 3),
    )
    earlier = RightsRequestFactory(
        state=S.IN_REVIEW,
        policy_due_on=date(2025, 2, 1),
        statutory_due_on=date(2025, 2, 3),
        effective_due_on=date(2025, 2, 1),
    )
    extended = RightsRequestFactory(
        state=S.ON_HOLD,
        held_from_state=S.IN_REVIEW,
        policy_due_on=date(2025, 5, 10),
        statutory_due_on=date(2025, 5, 3),
        effective_due_on=date(2025, 5, 3),
        extended_at=at(2025, 1, 20),
        extension_calendar_days=59,
        extension_working_days=40,
        extension_reason="Busy.",
    )
    closed = RightsRequestFactory(
        state=S.COMPLETED,
        policy_due_on=date(2025, 2, 10),
        statutory_due_on=date(2025, 2, 3),
        effective_due_on=date(2025, 2, 3),
    )
    flagged = set(selectors.policy_after_statutory().values_list("pk", flat=True))
    assert flagged == {later.pk, extended.pk}
    assert not {same.pk, earlier.pk, closed.pk} & flagged


@time_machine.travel(datetime(2026, 12, 7, 9, tzinfo=LONDON), tick=False)
def test_the_public_form_shows_the_date_that_applies_in_each_regime(client):
    """Policy vs. law: the requester is promised the earlier of the policy's 30 working days and the
    statutory limit (GDPR / UK GDPR Art. 12(3): one month; CCPA §1798.130(a)(2): 45 days)."""
    page = client.get("/requests/new/").content.decode()
    today = date(2026, 12, 7)
    for regime in Regime:
        due = deadlines.due_dates(today, regime=regime).effective
        assert due.strftime("%-d %B %Y") in page
    assert "7 January 2027" in page  # UK/EU: one month, before the 30 working days (which end 21 January)


def test_the_status_page_shows_the_earlier_date_and_both_dates_behind_it(client, committed, mailoutbox):
    """Policy vs. law: the requester sees the date that applies (the earlier), and why."""
    from dsr_requests.tests.conftest import link_in

    with time_machine.travel(at(2024, 3, 4), tick=False):
        with committed():
            services.submit_request(request_type="review", name="Ada", email="ada@example.org", country="FR")
        confirm = link_in(mailoutbox[-1].body, "/requests/confirm/")
        with committed():
            client.post(confirm)
    status = link_in(mailoutbox[-1].body, "/requests/status/")
    page = client.get(status).content.decode()
    assert "4 April 2024" in page  # GDPR: one month
    # Our 30 working days (Good Friday and Easter Monday are not working days), and the law's regime.
    assert "16 April 2024" in page and "GDPR" in page


def test_staff_see_which_date_applies_and_why():
    """Policy vs. law: staff see both dates and which one wins."""
    rights_request = RightsRequestFactory(
        state=S.IN_REVIEW, regime=Regime.UK_GDPR, received_at=at(2024, 3, 4)
    )
    text = selectors.due_date_explanation(rights_request, date(2024, 3, 5))
    assert "2024-04-04" in text and "2024-04-16" in text and "meet the law's" in text
    assert mail.outbox == []
