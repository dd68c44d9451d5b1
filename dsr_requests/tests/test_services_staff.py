"""The staff side of services.py: every staff transition allowed and refused, deadlines kept current,
permissions of each role, and two staff acting at once.

(The intake side of services.py is tested in test_services.py.)
"""

import threading
from datetime import date, datetime, timedelta

import pytest
import time_machine
from django.apps import apps as django_apps
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction

from dsr_requests import deadlines, roles, services, staff_actions
from dsr_requests.models import OutboundEmail, RequestEvent, RequestState, RequestType, RightsRequest
from dsr_requests.tests.conftest import LONDON
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory

S = RequestState
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("uk_calendar")]


@pytest.fixture
def admin_user():
    return StaffUserFactory(roles=[roles.PRIVACY_ADMIN])


def at(year, month, day, hour=10):
    """An aware London time."""
    return datetime(year, month, day, hour, tzinfo=LONDON)


def snapshot(rights_request):
    """What must not change when an action is refused."""
    fresh = RightsRequest.objects.get(pk=rights_request.pk)
    return (
        fresh.state,
        fresh.held_from_state,
        fresh.effective_due_on,
        fresh.extended_at,
        fresh.approved_by_id,
        fresh.erasure_approved_by_id,
        RequestEvent.objects.filter(request=fresh).count(),
        OutboundEmail.objects.filter(request=fresh).count(),
    )


# --- every staff action from every state -------------------------------------------------------------

ACTIONS = {
    "approve": lambda r, u: services.approve(rights_request=r, actor=u),
    "start_fulfilment": lambda r, u: services.start_fulfilment(rights_request=r, actor=u),
    "complete": lambda r, u: services.complete(rights_request=r, actor=u),
    "put_on_hold": lambda r, u: services.put_on_hold(
        reason="clarification", rights_request=r, actor=u, message="Which site is it about?"
    ),
    "resume": lambda r, u: services.resume(rights_request=r, actor=u),
    "reject": lambda r, u: services.reject(
        rights_request=r, actor=u, ground="other", reason="We hold no data about you."
    ),
}
ALLOWED = {
    "approve": {(S.IN_REVIEW, S.APPROVED)},
    "start_fulfilment": {(S.APPROVED, S.FULFILLING)},
    "complete": {(S.FULFILLING, S.COMPLETED)},
    "put_on_hold": {(S.VERIFYING, S.ON_HOLD), (S.IN_REVIEW, S.ON_HOLD), (S.APPROVED, S.ON_HOLD)},
    "resume": {(S.ON_HOLD, S.IN_REVIEW)},
    "reject": {
        (S.VERIFYING, S.REJECTED),
        (S.IN_REVIEW, S.REJECTED),
        (S.APPROVED, S.REJECTED),
        (S.ON_HOLD, S.REJECTED),
    },
}


def _request_in(state):
    extra = {"held_from_state": S.IN_REVIEW} if state == S.ON_HOLD else {}
    if state == S.REJECTED:
        extra["rejection_reason"] = "earlier"
    return RightsRequestFactory(state=state, **extra)


@pytest.mark.parametrize(
    ("action", "from_state", "to_state"),
    sorted((action, f, t) for action, pairs in ALLOWED.items() for f, t in pairs),
)
def test_allowed_staff_transition_changes_state_and_writes_one_staff_event(
    action, from_state, to_state, admin_user
):
    rights_request = _request_in(from_state)
    result = ACTIONS[action](rights_request, admin_user)
    assert result.state == to_state
    assert RightsRequest.objects.get(pk=rights_request.pk).state == to_state
    # (Leaving a hold also adds a system note saying how the dates moved.)
    event = RequestEvent.objects.exclude(actor_kind=RequestEvent.ActorKind.SYSTEM).get(request=rights_request)
    assert (event.from_state, event.to_state, event.actor, event.actor_kind) == (
        from_state,
        to_state,
        admin_user,
        RequestEvent.ActorKind.STAFF,
    )


@pytest.mark.parametrize(
    ("action", "from_state"),
    sorted(
        (action, state) for action in ACTIONS for state in S if state not in {f for f, _t in ALLOWED[action]}
    ),
)
def test_refused_staff_transition_raises_and_changes_nothing(action, from_state, admin_user):
    rights_request = _request_in(from_state)
    before = snapshot(rights_request)
    with pytest.raises((services.InvalidTransition, services.ActionRefused)):
        ACTIONS[action](rights_request, admin_user)
    assert snapshot(rights_request) == before


def test_refusal_message_names_both_states(admin_user):
    rights_request = _request_in(S.COMPLETED)
    with pytest.raises(services.InvalidTransition, match="Completed.*Approved"):
        services.approve(rights_request=rights_request, actor=admin_user)


def test_action_on_a_request_that_changed_since_the_page_was_shown_is_refused(admin_user):
    rights_request = _request_in(S.APPROVED)
    before = snapshot(rights_request)
    with pytest.raises(services.ActionRefused, match="changed meanwhile"):
        services.reject(
            rights_request=rights_request,
            actor=admin_user,
            ground="other",
            reason="no",
            expected_state=S.IN_REVIEW,
        )
    assert snapshot(rights_request) == before


# --- reject, hold, complete: what the requester is told ----------------------------------------------


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_reject_without_a_reason_is_refused(reason, admin_user):
    rights_request = _request_in(S.IN_REVIEW)
    before = snapshot(rights_request)
    with pytest.raises(services.ActionRefused, match="reason"):
        services.reject(rights_request=rights_request, actor=admin_user, ground="other", reason=reason)
    assert snapshot(rights_request) == before


def test_reject_records_the_reason_and_sends_it_to_the_requester(admin_user, committed, mailoutbox):
    rights_request = _request_in(S.IN_REVIEW)
    with committed():
        services.reject(
            rights_request=rights_request,
            actor=admin_user,
            ground="other",
            reason="  We hold no data about this address. ",
        )
    rights_request.refresh_from_db()
    assert rights_request.rejection_reason == "We hold no data about this address."
    assert rights_request.closed_at is not None
    event = rights_request.events.get()
    assert event.public and event.note == "We hold no data about this address."
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == [rights_request.email]
    assert "We hold no data about this address." in mailoutbox[0].body
    assert "We hold no data about this address." in mailoutbox[0].alternatives[0][0]


def test_put_on_hold_asks_the_requester_and_resume_returns_to_the_previous_state(
    admin_user, committed, mailoutbox
):
    for previous in (S.VERIFYING, S.IN_REVIEW, S.APPROVED):
        rights_request = _request_in(previous)
        with committed():
            services.put_on_hold(
                reason="clarification",
                rights_request=rights_request,
                actor=admin_user,
                message="Which site is it about?",
            )
        rights_request.refresh_from_db()
        assert (rights_request.state, rights_request.held_from_state) == (S.ON_HOLD, previous)
        assert rights_request.questions.get().question == "Which site is it about?"
        assert "Which site is it about?" in mailoutbox[-1].body
        services.resume(rights_request=rights_request, actor=admin_user)
        rights_request.refresh_from_db()
        assert (rights_request.state, rights_request.held_from_state) == (previous, "")
        assert rights_request.held_since is None


def test_put_on_hold_needs_a_message(admin_user):
    rights_request = _request_in(S.IN_REVIEW)
    with pytest.raises(services.ActionRefused):
        services.put_on_hold(
            reason="clarification", rights_request=rights_request, actor=admin_user, message=" "
        )


def test_complete_tells_the_requester_and_stamps_the_closing_time(admin_user, committed, mailoutbox):
    rights_request = _request_in(S.FULFILLING)
    with committed():
        services.complete(rights_request=rights_request, actor=admin_user)
    rights_request.refresh_from_db()
    assert rights_request.closed_at is not None
    assert [m.subject for m in mailoutbox] == [f"Request {rights_request.reference} is complete"]


def test_complete_is_refused_and_not_offered_while_a_fulfilment_job_runs(admin_user):
    from dsr_requests.models import FulfilmentRun

    rights_request = _request_in(S.FULFILLING)
    FulfilmentRun.objects.create(request=rights_request, status=FulfilmentRun.Status.RUNNING)
    assert "complete" not in [a.name for a in staff_actions.available_actions(rights_request, admin_user)]
    with pytest.raises(services.ActionRefused, match="background job"):
        services.complete(rights_request=rights_request, actor=admin_user)
    rights_request.refresh_from_db()
    assert rights_request.state == S.FULFILLING and not rights_request.events.exists()


# --- erasure: four eyes ------------------------------------------------------------------------------


def test_erasure_needs_a_second_approver_before_fulfilment(admin_user):
    first, second = StaffUserFactory(roles=[roles.APPROVER]), StaffUserFactory(roles=[roles.APPROVER])
    rights_request = RightsRequestFactory(state=S.IN_REVIEW, request_type=RequestType.DELETE)
    services.approve(rights_request=rights_request, actor=first)
    with pytest.raises(services.ActionRefused, match="second"):
        services.start_fulfilment(rights_request=rights_request, actor=admin_user)
    with pytest.raises(services.ActionRefused, match="someone other"):
        services.approve_erasure(rights_request=rights_request, actor=first)
    services.approve_erasure(rights_request=rights_request, actor=second)
    with pytest.raises(services.ActionRefused, match="already"):
        services.approve_erasure(rights_request=rights_request, actor=admin_user)
    rights_request = services.start_fulfilment(rights_request=rights_request, actor=admin_user)
    assert (rights_request.approved_by, rights_request.erasure_approved_by) == (first, second)
    assert rights_request.state == S.FULFILLING


def test_an_erasure_on_hold_cannot_be_approved_again_only_resumed(admin_user):
    """Approving an on-hold request would skip resume's permission and could replace the first approver."""
    first, second, third = (StaffUserFactory(roles=[roles.APPROVER]) for _ in range(3))
    rights_request = RightsRequestFactory(state=S.IN_REVIEW, request_type=RequestType.DELETE)
    services.approve(rights_request=rights_request, actor=first)
    services.approve_erasure(rights_request=rights_request, actor=second)
    rights_request = services.put_on_hold(
        reason="clarification", rights_request=rights_request, actor=first, message="Which site?"
    )
    for who in (second, third):
        with pytest.raises(services.InvalidTransition):
            services.approve(rights_request=rights_request, actor=who, expected_state=S.ON_HOLD)
        assert "approve" not in [a.name for a in staff_actions.available_actions(rights_request, who)]
    rights_request.refresh_from_db()
    assert (rights_request.state, rights_request.approved_by, rights_request.erasure_approved_by) == (
        S.ON_HOLD,
        first,
        second,
    )
    assert services.resume(rights_request=rights_request, actor=third).state == S.APPROVED


def test_second_approval_is_only_for_approved_deletions(admin_user):
    other = StaffUserFactory(roles=[roles.APPROVER])
    review = RightsRequestFactory(state=S.APPROVED, approved_by=other)
    with pytest.raises(services.ActionRefused):
        services.approve_erasure(rights_request=review, actor=admin_user)
    deletion = RightsRequestFactory(state=S.IN_REVIEW, request_type=RequestType.DELETE)
    with pytest.raises(services.ActionRefused):
        services.approve_erasure(rights_request=deletion, actor=admin_user)


# --- deadlines kept current ---------------------------------------------------------------------------


def test_due_dates_are_stored_on_receipt():
    rights_request = RightsRequestFactory(received_at=at(2024, 12, 2), regime=deadlines.Regime.UK_GDPR)
    assert rights_request.policy_due_on == date(2025, 1, 16)
    assert rights_request.statutory_due_on == date(2025, 1, 2)
    assert rights_request.effective_due_on == date(2025, 1, 2)


@pytest.mark.parametrize(
    ("country", "regime"),
    [("GB", "uk_gdpr"), ("de", "gdpr"), ("NO", "gdpr"), ("US", "ccpa"), ("JP", "uk_gdpr"), ("", "uk_gdpr")],
)
def test_regime_on_intake_follows_the_requesters_country(country, regime):
    fields = services.initial_deadline_fields(received_at=at(2024, 1, 10), country=country)
    assert fields["regime"] == regime


def test_hold_across_christmas_moves_both_due_dates_when_the_request_resumes(admin_user):
    rights_request = _request_in_at(S.IN_REVIEW, at(2024, 12, 2))
    with time_machine.travel(at(2024, 12, 20), tick=False):
        services.put_on_hold(
            reason="clarification",
            rights_request=rights_request,
            actor=admin_user,
            message="Please send the site URL.",
        )
    with time_machine.travel(at(2024, 12, 27), tick=False):
        services.resume(rights_request=rights_request, actor=admin_user)
    rights_request.refresh_from_db()
    # See test_deadlines: 3 working days and 7 calendar days on hold.
    assert (rights_request.hold_working_days, rights_request.hold_calendar_days) == (3, 7)
    assert rights_request.policy_due_on == date(2025, 1, 21)
    assert rights_request.statutory_due_on == date(2025, 1, 9)
    assert rights_request.effective_due_on == date(2025, 1, 9)


def test_requester_answering_ends_the_hold_and_moves_the_dates_too(admin_user):
    rights_request = _request_in_at(S.IN_REVIEW, at(2024, 12, 2))
    with time_machine.travel(at(2024, 12, 20), tick=False):
        services.put_on_hold(
            reason="clarification",
            rights_request=rights_request,
            actor=admin_user,
            message="Please send the site URL.",
        )
    with time_machine.travel(at(2024, 12, 27), tick=False):
        question = rights_request.questions.get()
        services.answer_question(question=question, answer="acme.atlassian.net")
    rights_request.refresh_from_db()
    assert rights_request.state == S.IN_REVIEW
    assert rights_request.statutory_due_on == date(2025, 1, 9)


def _request_in_at(state, received_at, **extra):
    return RightsRequestFactory(state=state, received_at=received_at, **extra)


def test_gdpr_extension_within_the_first_month_moves_both_dates_and_tells_the_requester(
    admin_user, committed, mailoutbox
):
    rights_request = _request_in_at(S.IN_REVIEW, at(2023, 1, 31), regime=deadlines.Regime.UK_GDPR)
    with time_machine.travel(at(2023, 2, 28), tick=False), committed():
        services.extend_deadline(
            rights_request=rights_request, actor=admin_user, reason="Many systems to search.", months=2
        )
    rights_request.refresh_from_db()
    assert rights_request.statutory_due_on == date(2023, 5, 2)
    assert rights_request.policy_due_on == date(2023, 5, 16)
    assert rights_request.effective_due_on == date(2023, 5, 2)
    assert rights_request.extension_reason == "Many systems to search."
    assert "Many systems to search." in mailoutbox[-1].body
    assert "2 May 2023" in mailoutbox[-1].body
    assert rights_request.events.get().public


def test_gdpr_extension_after_the_first_month_is_refused(admin_user):
    rights_request = _request_in_at(S.IN_REVIEW, at(2023, 1, 31), regime=deadlines.Regime.GDPR)
    before = snapshot(rights_request)
    with time_machine.travel(at(2023, 3, 1), tick=False):
        assert "extend_deadline" not in [
            a.name for a in staff_actions.available_actions(rights_request, admin_user)
        ]
        with pytest.raises(services.ActionRefused, match="Too late"):
            services.extend_deadline(
                rights_request=rights_request, actor=admin_user, reason="Busy.", months=1
            )
    assert snapshot(rights_request) == before


@pytest.mark.parametrize(("regime", "months"), [("gdpr", 3), ("gdpr", None), ("uk_gdpr", 0), ("ccpa", 1)])
def test_extension_beyond_the_legal_limit_is_refused(regime, months, admin_user):
    rights_request = _request_in_at(S.IN_REVIEW, at(2023, 1, 31), regime=regime)
    with time_machine.travel(at(2023, 2, 1), tick=False), pytest.raises(services.ActionRefused):
        services.extend_deadline(
            rights_request=rights_request, actor=admin_user, reason="Busy.", months=months
        )


def test_ccpa_extension_is_45_days_once_and_needs_a_reason(admin_user):
    rights_request = _request_in_at(S.IN_REVIEW, at(2024, 1, 1), regime=deadlines.Regime.CCPA)
    with time_machine.travel(at(2024, 2, 1), tick=False):
        with pytest.raises(services.ActionRefused, match="reason"):
            services.extend_deadline(rights_request=rights_request, actor=admin_user, reason="")
        services.extend_deadline(rights_request=rights_request, actor=admin_user, reason="Complex request.")
        with pytest.raises(services.ActionRefused, match="already"):
            services.extend_deadline(rights_request=rights_request, actor=admin_user, reason="Again.")
    rights_request.refresh_from_db()
    assert rights_request.statutory_due_on == date(2024, 3, 31)


def test_changing_the_regime_recomputes_the_statutory_date(admin_user):
    rights_request = _request_in_at(S.IN_REVIEW, at(2024, 1, 1), regime=deadlines.Regime.UK_GDPR)
    assert rights_request.statutory_due_on == date(2024, 2, 1)
    services.change_regime(rights_request=rights_request, actor=admin_user, regime="ccpa")
    rights_request.refresh_from_db()
    assert (rights_request.regime, rights_request.statutory_due_on) == ("ccpa", date(2024, 2, 15))
    assert not rights_request.events.get().public
    with pytest.raises(ValueError):
        services.change_regime(rights_request=rights_request, actor=admin_user, regime="hipaa")


def test_assigning_records_an_internal_event(admin_user):
    colleague = StaffUserFactory()
    rights_request = _request_in(S.IN_REVIEW)
    services.assign(rights_request=rights_request, actor=admin_user, assignee=colleague)
    services.assign(
        rights_request=rights_request, actor=admin_user, assignee=colleague
    )  # no change, no event
    rights_request.refresh_from_db()
    assert rights_request.assignee == colleague
    assert rights_request.events.get().note == f"Assigned to {colleague.username}."
    with pytest.raises(services.ActionRefused):
        services.assign(
            rights_request=rights_request, actor=admin_user, assignee=StaffUserFactory(is_staff=False)
        )


# --- roles -------------------------------------------------------------------------------------------

ROLE_CAN = {
    roles.REVIEWER: {"put_on_hold", "resume", "reject", "assign"},
    roles.APPROVER: {"put_on_hold", "resume", "reject", "assign", "approve", "fulfil", "extend"},
    roles.PRIVACY_ADMIN: {"put_on_hold", "resume", "reject", "assign", "approve", "fulfil", "extend"},
    None: set(),
}
ROLE_CASES = {
    "put_on_hold": (
        S.IN_REVIEW,
        lambda r, u: services.put_on_hold(reason="clarification", rights_request=r, actor=u, message="?"),
    ),
    "resume": (S.ON_HOLD, lambda r, u: services.resume(rights_request=r, actor=u)),
    "reject": (
        S.IN_REVIEW,
        lambda r, u: services.reject(rights_request=r, actor=u, ground="other", reason="No."),
    ),
    "assign": (S.IN_REVIEW, lambda r, u: services.assign(rights_request=r, actor=u, assignee=u)),
    "approve": (S.IN_REVIEW, lambda r, u: services.approve(rights_request=r, actor=u)),
    "fulfil": (S.APPROVED, lambda r, u: services.start_fulfilment(rights_request=r, actor=u)),
    "extend": (
        S.IN_REVIEW,
        lambda r, u: services.extend_deadline(rights_request=r, actor=u, reason="Busy.", months=1),
    ),
}


@pytest.mark.parametrize("role", list(ROLE_CAN))
@pytest.mark.parametrize("case", list(ROLE_CASES))
def test_each_role_may_do_exactly_its_actions(role, case):
    user = StaffUserFactory(roles=[role] if role else [])
    state, call = ROLE_CASES[case]
    rights_request = _request_in(state)
    if case in ROLE_CAN[role]:
        call(rights_request, user)
    else:
        before = snapshot(rights_request)
        with pytest.raises(PermissionDenied):
            call(rights_request, user)
        assert snapshot(rights_request) == before


def test_only_approvers_and_privacy_admins_give_the_second_erasure_approval():
    first = StaffUserFactory(roles=[roles.APPROVER])
    for role, allowed in ((roles.REVIEWER, False), (roles.APPROVER, True), (roles.PRIVACY_ADMIN, True)):
        rights_request = RightsRequestFactory(
            state=S.APPROVED, request_type=RequestType.DELETE, approved_by=first
        )
        user = StaffUserFactory(roles=[role])
        if allowed:
            services.approve_erasure(rights_request=rights_request, actor=user)
        else:
            with pytest.raises(PermissionDenied):
                services.approve_erasure(rights_request=rights_request, actor=user)


def test_role_groups_exist_with_the_permissions_of_the_design():
    from django.contrib.auth.models import Group

    perms = {
        group.name: set(group.permissions.values_list("codename", flat=True))
        for group in Group.objects.filter(name__in=roles.ROLE_PERMISSIONS)
    }
    assert {"view_personal_data", "verify_identity", "hold_request", "reject_request"} <= perms[
        roles.REVIEWER
    ]
    assert "approve_request" not in perms[roles.REVIEWER]
    assert {"approve_request", "approve_erasure"} <= perms[roles.APPROVER]
    assert "export_request_log" not in perms[roles.APPROVER]
    assert perms[roles.APPROVER] < perms[roles.PRIVACY_ADMIN]
    assert {"export_request_log", "change_rightsrequest"} <= perms[roles.PRIVACY_ADMIN]


def test_non_staff_and_inactive_users_are_refused_even_with_permissions():
    rights_request = _request_in(S.IN_REVIEW)
    for user in (
        StaffUserFactory(is_staff=False, roles=[roles.PRIVACY_ADMIN]),
        StaffUserFactory(is_active=False, roles=[roles.PRIVACY_ADMIN]),
    ):
        with pytest.raises(PermissionDenied):
            services.reject(rights_request=rights_request, actor=user, ground="other", reason="No.")


def test_available_actions_follow_state_and_permissions():
    reviewer = StaffUserFactory(roles=[roles.REVIEWER])
    approver = StaffUserFactory(roles=[roles.APPROVER])
    rights_request = _request_in(S.IN_REVIEW)
    with time_machine.travel(rights_request.received_at + timedelta(days=1)):
        assert [a.name for a in staff_actions.available_actions(rights_request, reviewer)] == [
            "put_on_hold",
            "reject",
            "assign",
        ]
        assert [a.name for a in staff_actions.available_actions(rights_request, approver)] == [
            "approve",
            "put_on_hold",
            "extend_deadline",
            "reject",
            "assign",
            "change_regime",
        ]
    assert staff_actions.available_actions(_request_in(S.COMPLETED), approver) == []


# --- two staff at once (PostgreSQL row locks) --------------------------------------------------------


def _race(calls):
    """Run ``calls`` in threads that all block on the request's row lock, then release them together."""
    results = [None] * len(calls)
    started = threading.Barrier(len(calls) + 1)

    def run(index, call):
        try:
            started.wait()
            results[index] = call()
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test inspects
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    return threads, results, started


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("second", ["reject", "approve"])
def test_two_staff_acting_at_once_exactly_one_succeeds_and_one_email_goes_out(second):
    from django.contrib.auth.models import Group

    roles.sync_role_groups(django_apps)  # an earlier transactional test's flush may have removed them
    admins = [StaffUserFactory(), StaffUserFactory()]
    for admin in admins:
        admin.groups.add(Group.objects.get(name=roles.PRIVACY_ADMIN))
    rights_request = _request_in(S.IN_REVIEW)
    mail.outbox = []
    # Both staff saw the request in review: the admin sends that state with every action, so whichever
    # acts second finds the request changed (approved -> rejected alone would be a legal move).
    seen = S.IN_REVIEW
    calls = [
        lambda: services.reject(
            rights_request=rights_request,
            actor=admins[0],
            ground="other",
            reason="No data held.",
            expected_state=seen,
        ),
        {
            "reject": lambda: services.reject(
                rights_request=rights_request,
                actor=admins[1],
                ground="other",
                reason="Not verified.",
                expected_state=seen,
            ),
            "approve": lambda: services.approve(
                rights_request=rights_request, actor=admins[1], expected_state=seen
            ),
        }[second],
    ]
    # Hold the row lock so both threads are queued on it at the same moment, then let them go.
    with transaction.atomic():
        RightsRequest.objects.select_for_update().get(pk=rights_request.pk)
        threads, results, started = _race(calls)
        started.wait()
        threading.Event().wait(0.3)
    for thread in threads:
        thread.join(timeout=30)
    successes = [r for r in results if isinstance(r, RightsRequest)]
    refusals = [r for r in results if isinstance(r, services.InvalidTransition | services.ActionRefused)]
    assert (len(successes), len(refusals)) == (1, 1), results
    rights_request.refresh_from_db()
    assert rights_request.state == successes[0].state
    assert rights_request.events.count() == 1
    expected_emails = 1 if rights_request.state == S.REJECTED else 0
    assert OutboundEmail.objects.filter(request=rights_request).count() == expected_emails
    assert len(mail.outbox) == expected_emails


# --- staff identity check ----------------------------------------------------------------------------


def test_reviewer_records_the_document_check_and_the_request_moves_to_review():
    from dsr_requests.models import CheckOutcome, IdentityCheck, IdentityStep

    reviewer = StaffUserFactory(roles=[roles.REVIEWER])
    rights_request = _request_in(S.VERIFYING)
    IdentityCheck.objects.create(
        request=rights_request, step=IdentityStep.EMAIL, method="link", outcome=CheckOutcome.PASSED
    )
    assert [a.name for a in staff_actions.available_actions(rights_request, reviewer)][:2] == [
        "document_passed",
        "document_failed",
    ]
    with pytest.raises(services.ActionRefused):
        services.record_document_check(rights_request=rights_request, actor=reviewer, passed=True, note="")
    with pytest.raises(PermissionDenied):
        services.record_document_check(
            rights_request=rights_request, actor=StaffUserFactory(), passed=True, note="ok"
        )
    services.record_document_check(
        rights_request=rights_request, actor=reviewer, passed=True, note="Passport matches."
    )
    rights_request.refresh_from_db()
    assert rights_request.state == S.IN_REVIEW
    check = rights_request.identity_checks.get(step=IdentityStep.DOCUMENT)
    assert (check.actor, check.note) == (reviewer, "Passport matches.")
