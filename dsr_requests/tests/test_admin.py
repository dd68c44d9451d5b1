"""The rights-request admin: list, filters, search, personal data, buttons, actions, dashboard, export."""

import csv
import io
import re
from datetime import date, datetime, timedelta
from html.parser import HTMLParser

import pytest
import time_machine
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dsr_requests import roles, services
from dsr_requests.models import RequestState, RequestType, RightsRequest
from dsr_requests.tests.conftest import LONDON
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory
from dsr_requests.tests.test_tasks import _refusing_smtp

S = RequestState
LIST_URL = reverse("admin:dsr_requests_rightsrequest_changelist")
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("uk_calendar")]


def logged_in(client, *role_names):
    user = StaffUserFactory(roles=list(role_names))
    client.force_login(user)
    return user


def change_url(rights_request):
    return reverse("admin:dsr_requests_rightsrequest_change", args=[rights_request.pk])


def act_url(rights_request, action):
    return reverse("admin:dsr_requests_rightsrequest_act", args=[rights_request.pk, action])


def messages_of(response):
    return [str(m) for m in response.context["messages"]] if response.context else []


# --- the list ----------------------------------------------------------------------------------------


@time_machine.travel(datetime(2024, 6, 3, 9, tzinfo=LONDON), tick=False)
def test_days_left_is_green_amber_or_red(client):
    logged_in(client, roles.REVIEWER)
    today = date(2024, 6, 3)
    far = RightsRequestFactory(state=S.IN_REVIEW, received_at=datetime(2024, 5, 30, tzinfo=LONDON))
    soon = RightsRequestFactory(state=S.IN_REVIEW, effective_due_on=today + timedelta(days=3))
    soon.policy_due_on = soon.statutory_due_on = soon.effective_due_on
    late = RightsRequestFactory(state=S.IN_REVIEW, effective_due_on=today - timedelta(days=2))
    for r in (soon, late):
        r.policy_due_on = r.statutory_due_on = r.effective_due_on
        r.save()
    body = client.get(LIST_URL).content.decode()
    assert body.count("dsr-due-ok") == 1 and far.reference in body
    assert "dsr-due-soon" in body and "3 working days" in body
    # Both dates were Saturday 1 June: one working day (Monday) past ours, two calendar days past the law's.
    assert "dsr-due-overdue" in body
    assert "1 working day past our date</span>" in body and "2 days past the statutory date</span>" in body


def test_list_never_shows_names_or_emails(client):
    logged_in(client, roles.PRIVACY_ADMIN)
    rights_request = RightsRequestFactory(name="Ada Lovelace", email="ada@example.org")
    body = client.get(LIST_URL).content.decode()
    assert rights_request.reference in body
    assert "Ada Lovelace" not in body and "ada@example.org" not in body


def test_search_by_exact_email_uses_the_blind_index(client):
    logged_in(client, roles.REVIEWER)
    mine = RightsRequestFactory(email="ada@example.org")
    other = RightsRequestFactory(email="bob@example.org")
    body = client.get(LIST_URL, {"q": "  ADA@example.org "}).content.decode()
    assert mine.reference in body and other.reference not in body
    body = client.get(LIST_URL, {"q": "ada@example"}).content.decode()
    assert mine.reference not in body


def test_search_by_reference(client):
    logged_in(client, roles.REVIEWER)
    mine, other = RightsRequestFactory(), RightsRequestFactory()
    body = client.get(LIST_URL, {"q": mine.reference.lower()}).content.decode()
    assert mine.reference in body and other.reference not in body


@time_machine.travel(datetime(2024, 6, 7, 9, tzinfo=LONDON), tick=False)  # a Friday
def test_overdue_and_due_soon_filters_read_the_effective_due_date(client):
    """Due soon = within the next 5 working days, overdue included: on a Friday, next Monday's request is due
    soon (a calendar week missed it), and so is the one due the Friday after; the Monday after is not."""
    logged_in(client, roles.REVIEWER)

    def due(day, state=S.IN_REVIEW, **extra):
        r = RightsRequestFactory(state=state, **extra)
        r.policy_due_on = r.statutory_due_on = r.effective_due_on = day
        r.save()
        return r

    overdue = due(date(2024, 6, 4))
    monday = due(date(2024, 6, 10))
    fifth_working_day = due(date(2024, 6, 14))
    later = due(date(2024, 6, 17))
    held = due(date(2024, 6, 1), state=S.ON_HOLD, held_from_state=S.IN_REVIEW)
    closed = due(date(2024, 6, 1), state=S.COMPLETED)
    body = client.get(LIST_URL, {"due": "overdue"}).content.decode()
    assert overdue.reference in body
    assert not {monday.reference, later.reference, held.reference, closed.reference} & set(body.split())
    assert monday.reference not in body and held.reference not in body and closed.reference not in body
    body = client.get(LIST_URL, {"due": "soon"}).content.decode()
    assert {overdue.reference, monday.reference, fifth_working_day.reference} <= set(
        re.findall(r"DSR-[0-9A-Z]{6}", body)
    )
    assert later.reference not in body and held.reference not in body and closed.reference not in body


def test_assigned_to_me_filter(client):
    me = logged_in(client, roles.REVIEWER)
    mine = RightsRequestFactory(assignee=me)
    theirs = RightsRequestFactory(assignee=StaffUserFactory())
    body = client.get(LIST_URL, {"assigned": "me"}).content.decode()
    assert mine.reference in body and theirs.reference not in body


def test_state_type_and_regime_filters_and_date_hierarchy_render(client):
    logged_in(client, roles.REVIEWER)
    RightsRequestFactory(request_type=RequestType.DELETE, regime="ccpa")
    for params in (
        {"state__exact": "submitted"},
        {"request_type__exact": "delete"},
        {"regime__exact": "ccpa"},
    ):
        response = client.get(LIST_URL, params)
        assert response.status_code == 200
        assert response.context["cl"].result_count == 1


def _list_queries(client, params):
    with CaptureQueriesContext(connection) as queries:
        assert client.get(LIST_URL, params).status_code == 200
    return len(queries)


@pytest.mark.parametrize("params", [{}, {"due": "overdue"}, {"q": "someone@example.org"}])
def test_changelist_query_count_does_not_grow_with_rows(client, params):
    me = logged_in(client, roles.REVIEWER)

    def add(count):
        for i in range(count):
            r = RightsRequestFactory(state=S.IN_REVIEW, email="someone@example.org", assignee=me)
            r.policy_due_on = r.statutory_due_on = r.effective_due_on = date(2020, 1, 1) + timedelta(days=i)
            r.save()

    add(3)
    _list_queries(client, params)  # warm the session and content-type caches
    small = _list_queries(client, params)
    add(40)
    assert _list_queries(client, params) == small


# --- the change page ---------------------------------------------------------------------------------


def test_personal_data_is_shown_only_with_the_view_personal_data_permission(client):
    rights_request = RightsRequestFactory(name="Ada Lovelace", email="ada@example.org")
    auditor = StaffUserFactory()
    auditor.user_permissions.add(Permission.objects.get(codename="view_rightsrequest"))
    client.force_login(auditor)
    body = client.get(change_url(rights_request)).content.decode()
    assert rights_request.reference in body
    assert "Ada Lovelace" not in body and "ada@example.org" not in body
    logged_in(client, roles.REVIEWER)
    body = client.get(change_url(rights_request)).content.decode()
    assert "Ada Lovelace" in body and "ada@example.org" in body


def test_change_page_shows_only_the_buttons_allowed_now(client):
    logged_in(client, roles.REVIEWER)
    rights_request = RightsRequestFactory(state=S.IN_REVIEW)
    body = client.get(change_url(rights_request)).content.decode()
    assert act_url(rights_request, "reject") in body
    assert act_url(rights_request, "put_on_hold") in body
    assert act_url(rights_request, "approve") not in body  # reviewers do not approve
    assert act_url(rights_request, "complete") not in body  # not in this state


class _FormNesting(HTMLParser):
    """Records every <form> start tag that comes while another form is open (browsers drop those)."""

    def __init__(self):
        super().__init__()
        self.depth, self.nested = 0, []

    def handle_starttag(self, tag, attrs):
        if tag == "form":
            if self.depth:
                self.nested.append(dict(attrs).get("action"))
            self.depth += 1

    def handle_endtag(self, tag):
        if tag == "form":
            self.depth = max(0, self.depth - 1)


def test_no_action_form_is_nested_in_the_admin_change_form(client):
    """A nested form is dropped by HTML parsers, so its button would submit the outer form instead
    (the first action button on the page did, until e2e/test_journey.py clicked it in chromium)."""
    logged_in(client, roles.PRIVACY_ADMIN)
    rights_request = RightsRequestFactory(state=S.IN_REVIEW)
    parser = _FormNesting()
    parser.feed(client.get(change_url(rights_request)).content.decode())
    assert parser.nested == []
    assert parser.depth == 0


def test_change_page_shows_the_timeline_and_identity_steps(client):
    admin = logged_in(client, roles.PRIVACY_ADMIN)
    rights_request = RightsRequestFactory(state=S.IN_REVIEW)
    services.put_on_hold(
        reason="clarification", rights_request=rights_request, actor=admin, message="Which site?"
    )
    body = client.get(change_url(rights_request)).content.decode()
    assert "Which site?" in body
    assert "identity check" in body.lower()


def test_button_runs_the_service_and_reports_success(client):
    logged_in(client, roles.REVIEWER)
    rights_request = RightsRequestFactory(state=S.IN_REVIEW)
    response = client.post(
        act_url(rights_request, "reject"),
        {"text": "No data held.", "ground": "nothing_held", "expected_state": "in_review"},
        follow=True,
    )
    assert any("updated" in m for m in messages_of(response)), messages_of(response)
    rights_request.refresh_from_db()
    assert (rights_request.state, rights_request.rejection_reason, rights_request.rejection_ground) == (
        S.REJECTED,
        "No data held.",
        "nothing_held",
    )


def test_refused_button_reports_why_and_changes_nothing(client):
    logged_in(client, roles.REVIEWER)
    rights_request = RightsRequestFactory(state=S.IN_REVIEW)
    response = client.post(act_url(rights_request, "reject"), {"text": " "}, follow=True)
    assert any("needs a reason" in m for m in messages_of(response))
    response = client.post(act_url(rights_request, "approve"), follow=True)
    assert any("permission" in m for m in messages_of(response))
    response = client.post(act_url(rights_request, "reject"), {"text": "No proof."}, follow=True)
    assert any("ground for the rejection" in m for m in messages_of(response))
    response = client.post(
        act_url(rights_request, "reject"),
        {"text": "x", "ground": "other", "expected_state": "approved"},
        follow=True,
    )
    assert any("changed meanwhile" in m for m in messages_of(response))
    rights_request.refresh_from_db()
    assert rights_request.state == S.IN_REVIEW


@pytest.mark.parametrize(
    "post",
    [
        {"action": "nonsense"},
        {"action": "extend_deadline", "text": "Busy", "months": "many"},
        {"action": "change_regime", "regime": "hipaa"},
    ],
)
def test_malformed_button_posts_get_a_message_not_a_500(client, post):
    logged_in(client, roles.PRIVACY_ADMIN)
    rights_request = RightsRequestFactory(state=S.IN_REVIEW)
    action = post.pop("action")
    response = client.post(act_url(rights_request, action), post, follow=True)
    assert response.status_code == 200
    assert messages_of(response)


def test_buttons_only_accept_post(client):
    logged_in(client, roles.REVIEWER)
    rights_request = RightsRequestFactory(state=S.IN_REVIEW)
    assert client.get(act_url(rights_request, "reject")).status_code == 405


def test_assign_and_change_regime_forms(client):
    admin = logged_in(client, roles.PRIVACY_ADMIN)
    rights_request = RightsRequestFactory(state=S.IN_REVIEW, regime="uk_gdpr")
    client.post(act_url(rights_request, "assign"), {"assignee": admin.pk})
    client.post(act_url(rights_request, "change_regime"), {"regime": "gdpr", "expected_state": "in_review"})
    rights_request.refresh_from_db()
    assert (rights_request.assignee, rights_request.regime) == (admin, "gdpr")


def test_extension_button_is_refused_after_the_first_month(client):
    logged_in(client, roles.APPROVER)
    rights_request = RightsRequestFactory(
        state=S.IN_REVIEW, regime="gdpr", received_at=datetime(2023, 1, 31, 10, tzinfo=LONDON)
    )
    with time_machine.travel(datetime(2023, 3, 1, 10, tzinfo=LONDON), tick=False):
        body = client.get(change_url(rights_request)).content.decode()
        assert act_url(rights_request, "extend_deadline") not in body
        response = client.post(
            act_url(rights_request, "extend_deadline"), {"text": "Busy", "months": "1"}, follow=True
        )
    assert any("Too late" in m for m in messages_of(response))
    rights_request.refresh_from_db()
    assert rights_request.extended_at is None


def test_nothing_is_added_edited_or_deleted_directly(client):
    logged_in(client, roles.PRIVACY_ADMIN)
    rights_request = RightsRequestFactory()
    assert client.get(reverse("admin:dsr_requests_rightsrequest_add")).status_code == 403
    assert (
        client.get(reverse("admin:dsr_requests_rightsrequest_delete", args=[rights_request.pk])).status_code
        == 403
    )
    response = client.post(change_url(rights_request), {"state": "completed"})
    assert response.status_code == 403
    rights_request.refresh_from_db()
    assert rights_request.state == S.SUBMITTED


# --- bulk actions ------------------------------------------------------------------------------------


def test_bulk_approve_reports_each_refusal_with_message_user(client):
    logged_in(client, roles.APPROVER)
    ready = RightsRequestFactory(state=S.IN_REVIEW)
    not_ready = RightsRequestFactory(state=S.VERIFYING)
    response = client.post(
        LIST_URL,
        {"action": "approve_selected", "_selected_action": [ready.pk, not_ready.pk]},
        follow=True,
    )
    texts = messages_of(response)
    assert any(
        m.startswith("1 approved; ")
        and f"{not_ready.reference} skipped: The requester's identity is not proven yet" in m
        for m in texts
    ), texts
    ready.refresh_from_db()
    not_ready.refresh_from_db()
    assert (ready.state, not_ready.state) == (S.APPROVED, S.VERIFYING)


def test_bulk_assign_to_me(client):
    me = logged_in(client, roles.REVIEWER)
    rights_request = RightsRequestFactory()
    client.post(LIST_URL, {"action": "assign_to_me", "_selected_action": [rights_request.pk]})
    rights_request.refresh_from_db()
    assert rights_request.assignee == me


# --- dashboard and request log -----------------------------------------------------------------------


def test_dashboard_shows_counts_and_a_chart_without_javascript(client):
    admin = logged_in(client, roles.REVIEWER)
    rights_request = RightsRequestFactory(state=S.FULFILLING)
    services.complete(rights_request=rights_request, actor=StaffUserFactory(roles=[roles.PRIVACY_ADMIN]))
    RightsRequestFactory(state=S.IN_REVIEW, assignee=admin)
    response = client.get(reverse("admin:dsr_requests_rightsrequest_dashboard"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "dsr-bar-received" in body
    # Server-rendered: no script from anywhere but our own static files (no CDN).
    assert all(src.startswith("/static/") for src in re.findall(r'<script[^>]*src="([^"]+)"', body))
    rows = {row["type"]: row for row in response.context["completion_times"]}
    assert rows[str(RequestType.REVIEW.label)]["count"] == 1


def test_dashboard_needs_view_permission(client):
    client.force_login(StaffUserFactory())
    assert client.get(reverse("admin:dsr_requests_rightsrequest_dashboard")).status_code == 403


def test_dashboard_query_count_does_not_grow_with_rows(client):
    logged_in(client, roles.REVIEWER)
    url = reverse("admin:dsr_requests_rightsrequest_dashboard")
    RightsRequestFactory.create_batch(3, state=S.IN_REVIEW)
    client.get(url)
    with CaptureQueriesContext(connection) as small:
        client.get(url)
    RightsRequestFactory.create_batch(30, state=S.COMPLETED, closed_at=datetime.now(tz=LONDON))
    with CaptureQueriesContext(connection) as large:
        client.get(url)
    assert len(large) == len(small)


def test_request_log_export_has_regulator_fields_and_no_personal_data(client):
    admin = logged_in(client, roles.PRIVACY_ADMIN)
    rights_request = RightsRequestFactory(
        state=S.IN_REVIEW, name="Ada Lovelace", email="ada@example.org", details="secret details"
    )
    services.reject(
        rights_request=rights_request,
        actor=admin,
        ground="identity_not_proven",
        reason="=HYPERLINK(1) identity not proven",
    )
    response = client.get(reverse("admin:dsr_requests_rightsrequest_export"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    assert "Ada" not in text and "ada@example.org" not in text and "secret details" not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1
    row = rows[0]
    assert row["reference"] == rights_request.reference
    assert (row["request_type"], row["channel"], row["outcome"]) == ("review", "web form", "denied")
    assert row["reason_for_denial"] == "Identity not proven"  # the ground, never the free text
    assert row["date_received"] and row["response_date"]


def test_request_log_export_needs_its_permission(client):
    logged_in(client, roles.APPROVER)
    assert client.get(reverse("admin:dsr_requests_rightsrequest_export")).status_code == 403


def test_groups_see_the_admin(client):
    assert Group.objects.filter(name__in=roles.ROLE_PERMISSIONS).count() == 3
    logged_in(client, roles.REVIEWER)
    assert client.get(LIST_URL).status_code == 200
    assert RightsRequest.objects.count() == 0


def test_change_page_says_which_identity_proof_is_still_needed(client):
    logged_in(client, roles.REVIEWER)
    rights_request = RightsRequestFactory(state=S.VERIFYING)
    body = client.get(change_url(rights_request)).content.decode()
    assert "Email control; Atlassian account or Staff document check" in body


def test_failed_emails_are_shown_and_staff_can_send_them_again(client, settings, mailoutbox, committed):
    """An email that failed for good (a refusing SMTP server, every attempt) is not a dead end for staff."""
    settings.DSR_EMAIL_MAX_ATTEMPTS = 1
    rights_request = RightsRequestFactory(state=S.IN_REVIEW)
    smtp_backend = settings.EMAIL_BACKEND
    _refusing_smtp(settings)
    email = services.queue_requester_email(rights_request=rights_request, event="received")
    assert services.deliver_email(email_id=email.pk) == "failed"
    settings.EMAIL_BACKEND = smtp_backend

    user = logged_in(client, roles.REVIEWER)
    body = client.get(change_url(rights_request)).content.decode()
    assert "1 Failed (gave up) (ConnectionRefusedError)" in body and "Send failed emails again" in body

    with committed():
        response = client.post(act_url(rights_request, "retry_emails"), follow=True)
    assert any("updated" in m for m in messages_of(response))
    email.refresh_from_db()
    assert email.status == "sent" and len(mailoutbox) == 1
    note = rights_request.events.get(public=False)
    assert note.actor == user and "queued to be sent again" in note.note
    assert "Send failed emails again" not in client.get(change_url(rights_request)).content.decode()


def test_only_staff_with_the_correspondence_permission_can_resend_failed_emails():
    from django.core.exceptions import PermissionDenied

    rights_request = RightsRequestFactory(state=S.IN_REVIEW)
    with pytest.raises(PermissionDenied):
        services.retry_failed_emails(rights_request=rights_request, actor=StaffUserFactory(roles=[]))


def test_a_site_scoped_request_tells_staff_to_confirm_the_account_is_the_sites_admin(client):
    logged_in(client, roles.REVIEWER)
    rights_request = RightsRequestFactory(
        state=S.IN_REVIEW,
        concerns="site",
        account_id="557058:abc",
        site_client_key="client-key-1",
        verified_site_url="https://acme.atlassian.net",
    )
    body = client.get(change_url(rights_request)).content.decode()
    assert "Account proven inside https://acme.atlassian.net" in body
    assert "confirm that before approving" in body


def test_staff_who_may_see_personal_data_read_the_requesters_answers_on_the_request(client):
    from dsr_requests.models import StaffQuestion

    asker = logged_in(client, roles.REVIEWER)
    rights_request = RightsRequestFactory(state=S.IN_REVIEW)
    services.put_on_hold(
        reason="clarification", rights_request=rights_request, actor=asker, message="Which site is it about?"
    )
    question = StaffQuestion.objects.get(request=rights_request)
    services.answer_question(question=question, answer="It is acme.atlassian.net")
    body = client.get(change_url(rights_request)).content.decode()
    assert "Which site is it about?" in body and "It is acme.atlassian.net" in body

    viewer = StaffUserFactory()  # may see requests, not their personal data
    viewer.user_permissions.add(Permission.objects.get(codename="view_rightsrequest"))
    client.force_login(viewer)
    assert "It is acme.atlassian.net" not in client.get(change_url(rights_request)).content.decode()
