"""The dashboard's rollup (issue 19): kept exact by the services, read in a fixed number of queries."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsr_requests import bench_data, roles, rollup, selectors, services, tokens
from dsr_requests.models import RequestCount, RequestState, RequestType, RightsRequest
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory

S = RequestState
pytestmark = pytest.mark.django_db

# One step: make a new request (received some days ago), or act on one of the requests made so far.
STEPS = st.one_of(
    st.tuples(st.just("submit"), st.sampled_from(RequestType.values), st.integers(0, 400)),
    # A rejection needs its reason and ground (database constraints): through ``reject``, below.
    st.tuples(
        st.just("transition"), st.integers(0, 5), st.sampled_from([v for v in S.values if v != S.REJECTED])
    ),
    st.tuples(st.just("reject"), st.integers(0, 5), st.just(None)),
    st.tuples(st.just("confirm"), st.integers(0, 5), st.just(None)),
    st.tuples(st.just("withdraw"), st.integers(0, 5), st.just(None)),
    st.tuples(st.just("close_unverified"), st.just(0), st.just(None)),
)


def _run(step, made, staff):
    """Carry out one step through the services; a refused step is fine (and must change no count)."""
    kind, first, second = step
    if kind == "submit":
        made.append(
            services.submit_request(
                request_type=first,
                name="Ada",
                email=f"ada{len(made)}@example.org",
                transfer_to="requester" if first == RequestType.TRANSFER else "",
                received_at=timezone.now() - timedelta(days=second, hours=len(made)),
            )
        )
        return
    if kind == "close_unverified":
        services.close_unverified_requests(now=timezone.now() + timedelta(days=400))
        return
    if not made:
        return
    rights_request = RightsRequest.objects.get(pk=made[first % len(made)].pk)
    try:
        if kind == "transition":
            services.transition(
                rights_request=rights_request,
                to_state=second,
                actor=services.SYSTEM,
                hold_reason="clarification" if second == S.ON_HOLD else "",
            )
        elif kind == "reject":
            services.reject(
                rights_request=rights_request,
                actor=staff,
                reason="No.",
                ground="other",
                acknowledge_late=True,
            )
        elif kind == "confirm":
            services.confirm_email(reference=rights_request.reference)
        else:
            services.withdraw(rights_request=rights_request)
    except (services.InvalidTransition, services.ActionRefused):
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEPS, min_size=1, max_size=30))
def test_the_rollup_equals_a_recount_after_any_sequence_of_service_calls(steps):
    """Every way a request is made or changes state (each transition, confirmation, withdrawal, closing
    of unconfirmed requests, refused attempts included) leaves the counts equal to a recount."""
    with transaction.atomic():
        made, staff = [], StaffUserFactory(roles=[roles.PRIVACY_ADMIN])
        for step in steps:
            _run(step, made, staff)
            assert rollup.stored() == rollup.recount(), step
        transaction.set_rollback(True)


def test_a_completion_counts_in_its_month_type_and_whole_days():
    rights_request = RightsRequestFactory(
        state=S.FULFILLING, received_at=timezone.now() - timedelta(days=3.5)
    )
    services.complete(rights_request=rights_request, actor=StaffUserFactory(roles=[roles.PRIVACY_ADMIN]))
    (row,) = RequestCount.objects.filter(kind=RequestCount.Kind.COMPLETED)
    assert (row.key, row.days, row.count) == (RequestType.REVIEW, 3, 1)
    assert row.month == timezone.localdate().replace(day=1)
    states = RequestCount.objects.filter(kind=RequestCount.Kind.STATE)
    assert (states.get(key=S.COMPLETED).count, states.get(key=S.FULFILLING).count) == (1, 0)


def test_a_refused_transition_leaves_the_counts_as_they_were():
    rights_request = RightsRequestFactory(state=S.COMPLETED, closed_at=timezone.now())
    before = rollup.stored()
    with pytest.raises(services.InvalidTransition):
        services.transition(rights_request=rights_request, to_state=S.IN_REVIEW, actor=services.SYSTEM)
    assert rollup.stored() == before


def test_the_dashboard_reads_six_queries_whatever_the_number_of_requests():
    RightsRequestFactory.create_batch(3, state=S.IN_REVIEW)
    with CaptureQueriesContext(connection) as small:
        first = selectors.dashboard()
    RightsRequestFactory.create_batch(40, state=S.COMPLETED, closed_at=timezone.now())
    RightsRequestFactory.create_batch(20, state=S.ON_HOLD, held_from_state=S.IN_REVIEW)
    with CaptureQueriesContext(connection) as large:
        second = selectors.dashboard()
    assert len(small) == len(large) == 6
    assert (first["open_total"], second["open_total"]) == (3, 23)
    assert second["months"][-1]["completed"] == 40


def test_the_dashboard_counts_overdue_and_due_soon_up_to_the_cap_and_says_more_than(client, monkeypatch):
    monkeypatch.setattr(selectors, "CAP", 2)
    yesterday = timezone.localdate() - timedelta(days=1)
    for _ in range(3):
        late = RightsRequestFactory(state=S.IN_REVIEW)
        late.policy_due_on = late.statutory_due_on = late.effective_due_on = yesterday
        late.save()
    data = selectors.dashboard()
    assert (data["overdue"], data["overdue_capped"], data["due_soon"], data["due_soon_capped"]) == (
        2,
        True,
        2,
        True,
    )
    client.force_login(StaffUserFactory(roles=[roles.REVIEWER]))
    body = client.get(reverse("admin:dsr_requests_rightsrequest_dashboard")).content.decode()
    assert body.count("more than 2") == 2


def test_dsr_rollup_check_finds_a_drifted_count_and_a_recount_fixes_it():
    RightsRequestFactory.create_batch(2, state=S.IN_REVIEW)
    call_command("dsr_rollup", "--check")
    RequestCount.objects.filter(kind=RequestCount.Kind.STATE, key=S.IN_REVIEW).update(count=7)
    with pytest.raises(CommandError):
        call_command("dsr_rollup", "--check")
    call_command("dsr_rollup")
    call_command("dsr_rollup", "--check")
    assert RequestCount.objects.get(kind=RequestCount.Kind.STATE, key=S.IN_REVIEW).count == 2


def test_the_bench_seeding_tops_up_to_the_size_asked_with_events_and_a_true_rollup():
    call_command("dsr_seed_bench", requests=30, events_per_request=2, bench_database=True)
    assert bench_data.existing() == (30, 60)
    call_command("dsr_seed_bench", requests=45, events_per_request=2, bench_database=True)
    assert bench_data.existing() == (45, 90)
    assert rollup.stored() == rollup.recount()
    needle = RightsRequest.objects.get(reference=f"{bench_data.PREFIX}0000000")
    assert needle.email.endswith("@example.org")  # a real token: the field decrypts
    # The search's person has the same three requests at every size; the old needle one in a thousand.
    person = RightsRequest.objects.filter(email_hash=tokens.email_blind_index(bench_data.PERSON))
    assert sorted(person.values_list("reference", flat=True)) == [
        f"{bench_data.PREFIX}000000{number}" for number in (1, 2, 3)
    ]


def test_the_bench_seeding_refuses_a_database_not_marked_as_a_bench():
    with pytest.raises(CommandError):
        call_command("dsr_seed_bench", requests=10)
    assert not RightsRequest.objects.exists()


def test_the_request_list_counts_only_up_to_its_cap_and_says_so(client, monkeypatch):
    """A list over a million requests does not count them all: past the cap it says "more than"."""
    from artemis_portal import paging
    from dsr_requests.tests.test_admin import LIST_URL, logged_in

    monkeypatch.setattr(paging.CappedCountPaginator, "cap", 5)
    logged_in(client, roles.REVIEWER)
    RightsRequestFactory.create_batch(8, state=S.IN_REVIEW)
    body = client.get(LIST_URL).content.decode()
    assert "More than 5 requests" in body
    response = client.get(LIST_URL, {"state__exact": "in_review", "request_type__exact": "review"})
    assert response.context["cl"].paginator.capped
    RightsRequestFactory(state=S.APPROVED)
    response = client.get(LIST_URL, {"state__exact": "approved"})
    assert response.context["cl"].result_count == 1 and not response.context["cl"].paginator.capped
