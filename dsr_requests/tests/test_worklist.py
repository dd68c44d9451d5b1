"""Working the queue: urgency order, "due soon" in working days, lateness labels, state names, search, and the
staff-actions registry (what is offered, why not, bulk reports, the role sync reading it)."""

import re
from datetime import date, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.urls import reverse

from dsr_requests import roles, selectors, services, staff_actions, worklist
from dsr_requests.forms import collation_key, country_choices
from dsr_requests.models import RequestState, RequestType, RightsRequest
from dsr_requests.tests.conftest import LONDON
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory
from dsr_requests.tests.test_admin import change_url, logged_in, messages_of

pytestmark = pytest.mark.django_db
S = RequestState
LIST_URL = reverse("admin:dsr_requests_rightsrequest_changelist")
REFERENCE = re.compile(r"DSR-[0-9A-Z]{6}")


def _due(day, state=S.IN_REVIEW, *, policy=None, statutory=None, **extra):
    r = RightsRequestFactory(state=state, **extra)
    r.policy_due_on = policy or day
    r.statutory_due_on = statutory or day
    r.effective_due_on = min(r.policy_due_on, r.statutory_due_on)
    r.save()
    return r


def _listed(body):
    return list(dict.fromkeys(REFERENCE.findall(body)))


# --- order ------------------------------------------------------------------------------------------------


def test_the_open_states_of_the_ordering_are_the_workflows():
    assert set(worklist.OPEN) == set(services.OPEN_STATES)


def test_the_list_is_most_urgent_first_then_closed_newest_first_and_newest_first_can_be_picked(client):
    logged_in(client, roles.REVIEWER)
    now = datetime(2024, 6, 7, 9, tzinfo=LONDON)
    closed_new = _due(date(2024, 6, 1), S.COMPLETED, received_at=now - timedelta(days=1))
    later = _due(date(2024, 7, 1), received_at=now - timedelta(days=2))
    sooner = _due(date(2024, 6, 20), received_at=now - timedelta(days=30))
    # The earlier of its two dates counts: the statutory date comes first here.
    by_statutory = _due(
        date(2024, 6, 10), policy=date(2024, 7, 20), statutory=date(2024, 6, 10), received_at=now
    )
    closed_old = _due(
        date(2024, 5, 1), S.REJECTED, received_at=now - timedelta(days=60), rejection_reason="x"
    )

    body = client.get(LIST_URL).content.decode()
    assert _listed(body) == [r.reference for r in (by_statutory, sooner, later, closed_new, closed_old)]
    body = client.get(LIST_URL, {"order": "newest"}).content.decode()
    assert _listed(body) == [r.reference for r in (by_statutory, closed_new, later, sooner, closed_old)]
    assert "Most urgent first" in body and "Newest first" in body


# --- due soon and lateness --------------------------------------------------------------------------------


@time_machine.travel(datetime(2024, 6, 7, 9, tzinfo=LONDON), tick=False)  # a Friday
def test_on_a_friday_a_request_due_next_monday_is_due_soon_on_the_list_and_the_dashboard(client):
    logged_in(client, roles.REVIEWER)
    monday = _due(date(2024, 6, 10))
    overdue = _due(date(2024, 6, 5))
    _due(date(2024, 6, 17))  # the 6th working day: not soon
    soon = worklist.due_soon(date(2024, 6, 7), RightsRequest.objects.all())
    assert set(soon) == {monday, overdue}
    assert selectors.dashboard()["due_soon"] == 2
    page = client.get(reverse("admin:dsr_requests_rightsrequest_dashboard")).content.decode()
    assert "?due=soon" in page and "due within 5 working days (overdue included)" in page


@time_machine.travel(datetime(2024, 6, 12, 9, tzinfo=LONDON), tick=False)  # a Wednesday
def test_overdue_is_working_days_past_our_date_and_calendar_days_past_the_statutory_date():
    # Our date Friday 7 June: 3 working days ago (Mon, Tue, Wed); the statutory date Sunday 9 June: 3 days.
    late = _due(date(2024, 6, 7), policy=date(2024, 6, 7), statutory=date(2024, 6, 9))
    shown = selectors.days_left(late, date(2024, 6, 12))
    assert shown.level == "overdue"
    assert shown.text == "3 working days past our date; 3 days past the statutory date"
    only_ours = _due(date(2024, 6, 11), policy=date(2024, 6, 11), statutory=date(2024, 6, 30))
    assert worklist.lateness(only_ours, date(2024, 6, 12)) == "1 working day past our date"


# --- state names ------------------------------------------------------------------------------------------


def test_every_state_has_a_staff_name_and_a_requester_name():
    assert set(worklist.STATE_NAMES) == set(RequestState)
    assert worklist.staff_label(S.SUBMITTED) == "Awaiting email confirmation"
    assert worklist.staff_label(S.VERIFYING) == "Identity check needed"
    assert worklist.requester_label(S.VERIFYING) == S.VERIFYING.label


def test_staff_see_staff_names_in_the_list_and_its_filter(client):
    logged_in(client, roles.REVIEWER)
    RightsRequestFactory(state=S.VERIFYING)
    body = client.get(LIST_URL).content.decode()
    assert "Identity check needed" in body
    body = client.get(LIST_URL, {"state__exact": "verifying"}).content.decode()
    assert "Identity check needed" in body and len(_listed(body)) == 1


# --- search -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["{ref}", "{bare}", "{lower}", "dsr{bare}", "  {ref} "])
def test_search_finds_a_reference_with_or_without_its_prefix(client, form):
    logged_in(client, roles.REVIEWER)
    mine, other = RightsRequestFactory(), RightsRequestFactory()
    bare = mine.reference.removeprefix("DSR-")
    term = form.format(ref=mine.reference, bare=bare, lower=bare.lower())
    assert _listed(client.get(LIST_URL, {"q": term}).content.decode()) == [mine.reference]
    assert other.reference not in client.get(LIST_URL, {"q": term}).content.decode()


def test_search_finds_an_atlassian_account_id_and_an_email_through_the_blind_index(client):
    logged_in(client, roles.REVIEWER)
    mine = RightsRequestFactory(account_id="557058:f00dfeed-1234", email="ada@example.org")
    RightsRequestFactory(account_id="557058:other")
    assert _listed(client.get(LIST_URL, {"q": "557058:f00dfeed-1234"}).content.decode()) == [mine.reference]
    assert _listed(client.get(LIST_URL, {"q": "Ada@Example.org"}).content.decode()) == [mine.reference]
    assert _listed(client.get(LIST_URL, {"q": "557058"}).content.decode()) == []


# --- the staff-actions registry ---------------------------------------------------------------------------


def test_each_action_is_named_once_with_a_declared_permission_and_a_callable_service():
    declared = {codename for codename, _name in RightsRequest._meta.permissions}
    names = [action.name for action in staff_actions.ACTIONS]
    assert len(names) == len(set(names))
    for action in staff_actions.ACTIONS:
        assert action.permission in declared, action.name
        assert callable(action.service), action.name
        assert action.role in (staff_actions.REVIEWER, staff_actions.APPROVER)


def test_the_role_groups_get_exactly_the_permissions_the_registry_names_for_them():
    def codenames(role):
        return set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))

    reviewer_actions = set(staff_actions.permissions_of(staff_actions.REVIEWER))
    approver_actions = set(staff_actions.permissions_of(staff_actions.APPROVER))
    assert reviewer_actions <= codenames(roles.REVIEWER)
    assert not (approver_actions - reviewer_actions) & codenames(roles.REVIEWER)
    assert approver_actions <= codenames(roles.APPROVER)


def test_a_completed_request_offers_no_action_and_no_regime_change_and_says_why(client):
    logged_in(client, roles.PRIVACY_ADMIN)
    done = RightsRequestFactory(state=S.COMPLETED)
    body = client.get(change_url(done)).content.decode()
    assert "change_regime" not in body and "Change regime" not in body
    assert "This request is closed (“Completed”): no workflow action can be taken" in body
    response = client.post(
        reverse("admin:dsr_requests_rightsrequest_act", args=[done.pk, "change_regime"]),
        {"regime": "gdpr"},
        follow=True,
    )
    assert any("keeps the regime" in m for m in messages_of(response))


def test_a_deletion_waiting_for_its_second_approver_says_who_approved_and_that_another_must():
    first = StaffUserFactory(username="alice", roles=[roles.APPROVER])
    deletion = RightsRequestFactory(request_type=RequestType.DELETE, state=S.IN_REVIEW)
    deletion = services.approve(rights_request=deletion, actor=first)
    reasons = {u.action.name: u.reason for u in staff_actions.unavailable_actions(deletion, first)}
    assert reasons["approve_erasure"] == (
        "You gave the first approval: another staff member must give the second (four eyes)."
    )
    assert reasons["start_fulfilment"] == (
        "Waiting for the second approval of the erasure: approved by alice; another staff member must "
        "approve before the data is deleted."
    )
    assert reasons["approve"] == "Already approved by alice."
    second = StaffUserFactory(roles=[roles.APPROVER])
    assert "approve_erasure" in [a.name for a in staff_actions.available_actions(deletion, second)]


def test_the_change_page_lists_what_is_not_open_and_why(client):
    logged_in(client, roles.REVIEWER)
    in_review = RightsRequestFactory(state=S.IN_REVIEW)
    body = client.get(change_url(in_review)).content.decode()
    assert "Not open now, and why" in body
    assert "Your role does not include this (“Can approve requests”)." in body


def test_a_bulk_action_reports_each_request_in_one_message(client):
    approver = logged_in(client, roles.APPROVER)
    ready = [RightsRequestFactory(state=S.IN_REVIEW) for _ in range(3)]
    already = RightsRequestFactory(state=S.IN_REVIEW)
    services.approve(rights_request=already, actor=StaffUserFactory(username="bob", roles=[roles.APPROVER]))
    response = client.post(
        LIST_URL,
        {"action": "approve_selected", "_selected_action": [r.pk for r in (*ready, already)]},
        follow=True,
    )
    assert messages_of(response) == [f"3 approved; {already.reference} skipped: Already approved by bob."]
    assert all(RightsRequest.objects.get(pk=r.pk).approved_by == approver for r in ready)


# --- country list -----------------------------------------------------------------------------------------


def test_the_country_list_is_sorted_by_name_not_code_with_no_answer_first():
    choices = country_choices()
    assert choices[0][0] == ""
    names = [str(label) for _code, label in choices[1:]]
    assert names == sorted(names, key=collation_key)
    assert names.index("Australia") < names.index("Austria")  # AU after AT by code
    assert names.index("Sweden") < names.index("Switzerland")  # CH would come third by code


def test_the_collation_sets_accents_and_case_aside_as_a_dictionary_does():
    names = ["Zypern", "Österreich", "Oman", "Ägypten", "estland", "Dänemark"]
    assert sorted(names, key=collation_key) == [
        "Ägypten",
        "Dänemark",
        "estland",
        "Oman",
        "Österreich",
        "Zypern",
    ]
