"""Services of the rights-request intake: transitions, submission, confirmation, identity proof."""

import pytest

from dsr_requests import services
from dsr_requests.models import RequestEvent, RequestState
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory


@pytest.mark.django_db
def test_transition_changes_state_and_writes_one_event():
    request = RightsRequestFactory(state=RequestState.VERIFYING)
    staff = StaffUserFactory()
    services.transition(request, to_state=RequestState.IN_REVIEW, actor=staff, note="ok")
    request.refresh_from_db()
    assert request.state == RequestState.IN_REVIEW
    event = request.events.get()
    assert (event.from_state, event.to_state, event.actor, event.actor_kind) == (
        "verifying",
        "in_review",
        staff,
        RequestEvent.ActorKind.STAFF,
    )


@pytest.mark.django_db
def test_illegal_transition_raises_and_changes_nothing():
    request = RightsRequestFactory(state=RequestState.SUBMITTED)
    with pytest.raises(services.InvalidTransition):
        services.transition(request, to_state=RequestState.COMPLETED, actor=services.SYSTEM)
    request.refresh_from_db()
    assert request.state == RequestState.SUBMITTED
    assert not request.events.exists()


@pytest.mark.django_db
def test_on_hold_remembers_and_only_returns_to_the_state_it_came_from():
    request = RightsRequestFactory(state=RequestState.IN_REVIEW)
    staff = StaffUserFactory()
    request = services.transition(request, to_state=RequestState.ON_HOLD, actor=staff)
    assert request.held_from_state == RequestState.IN_REVIEW
    with pytest.raises(services.InvalidTransition):
        services.transition(request, to_state=RequestState.APPROVED, actor=staff)
    request = services.transition(request, to_state=RequestState.IN_REVIEW, actor=staff)
    assert (request.state, request.held_from_state) == (RequestState.IN_REVIEW, "")


@pytest.mark.django_db
def test_transition_refuses_an_actor_that_is_neither_staff_nor_requester_nor_system():
    request = RightsRequestFactory(state=RequestState.VERIFYING)
    with pytest.raises(ValueError):
        services.transition(request, to_state=RequestState.WITHDRAWN, actor=None)
