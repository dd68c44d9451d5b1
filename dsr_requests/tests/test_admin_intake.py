"""The admin pages of admin_intake.py: "Log a request" and the yearly request metrics."""

import csv
import io
from datetime import date, datetime

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from dsr_requests import forms as public_forms
from dsr_requests import roles
from dsr_requests.models import DocumentKind, IdentityDocument, IdentityStep, OutboundEmail, RightsRequest
from dsr_requests.tests.conftest import LONDON
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory
from security.models import AccessAction, AccessEvent

NOW = datetime(2025, 3, 10, 10, tzinfo=LONDON)  # a Monday
LIST_URL = reverse("admin:dsr_requests_rightsrequest_changelist")
LOG_URL = reverse("admin:dsr_requests_rightsrequest_log")
METRICS_URL = reverse("admin:dsr_requests_rightsrequest_metrics")
PDF = b"%PDF-1.4\nI authorise Agent Smith to ask for my data.\n%%EOF\n"
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("uk_calendar")]


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(NOW, tick=False):
        yield


def logged_in(client, *role_names):
    user = StaffUserFactory(roles=list(role_names))
    client.force_login(user)
    return user


def viewer(client):
    """Staff who may see the list but hold none of the role permissions."""
    user = StaffUserFactory()
    user.user_permissions.add(Permission.objects.get(codename="view_rightsrequest"))
    client.force_login(user)
    return user


def form_data(**overrides):
    data = {
        "channel": "email",
        "received_on": "2025-03-03",
        "received_time": "",
        "request_type": "review",
        "name": "Ada Lovelace",
        "email": "ada@example.org",
        "country": "GB",
        "concerns": "",
        "site_url": "",
        "details": "Her letter asks for everything we hold.",
        "transfer_to": "",
        "transfer_email": "",
    }
    data.update(overrides)
    return {name: value for name, value in data.items() if value is not None}


def agent_data(**overrides):
    fields = {
        "by_agent": "on",
        "agent_name": "Agent Smith",
        "agent_email": "agent@agency.example",
        "agent_permission": SimpleUploadedFile("permission.pdf", PDF, content_type="application/pdf"),
    }
    fields.update(overrides)
    return form_data(**fields)


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def nothing_stored(mailoutbox):
    return not (RightsRequest.objects.exists() or OutboundEmail.objects.exists() or mailoutbox)


# --- Log a request ------------------------------------------------------------------------------------


def test_the_list_offers_log_a_request_and_the_metrics_to_the_staff_allowed_them(client):
    logged_in(client, roles.REVIEWER)
    body = client.get(LIST_URL).content.decode()
    assert LOG_URL in body and METRICS_URL not in body
    logged_in(client, roles.PRIVACY_ADMIN)
    body = client.get(LIST_URL).content.decode()
    assert LOG_URL in body and METRICS_URL in body
    viewer(client)
    body = client.get(LIST_URL).content.decode()
    assert LOG_URL not in body and METRICS_URL not in body
    assert client.get(LOG_URL).status_code == 403
    assert client.post(LOG_URL, form_data()).status_code == 403
    assert client.get(METRICS_URL).status_code == 403
    assert not RightsRequest.objects.exists()


def test_the_log_form_asks_what_the_public_form_asks_plus_channel_date_and_agent(client):
    logged_in(client, roles.REVIEWER)
    response = client.get(LOG_URL)
    assert response.status_code == 200
    form = response.context["form"]
    for name in ("request_type", "name", "email", "country", "concerns", "site_url", "details"):
        assert name in form.fields
    for name in ("transfer_to", "transfer_email", "channel", "received_on", "received_time"):
        assert name in form.fields
    for name in ("by_agent", "agent_name", "agent_email", "agent_permission"):
        assert name in form.fields
    assert "website" not in form.fields  # no honeypot for staff
    assert list(form.fields["country"].choices) == public_forms.country_choices()
    assert [value for value, _label in form.fields["channel"].choices] == ["email", "post", "phone"]
    assert 'enctype="multipart/form-data"' in response.content.decode()


def test_staff_log_a_request_and_the_clocks_start_on_the_date_received(client, committed, mailoutbox):
    """GDPR Art. 12(3); ICO, right of access, "Time limits": "the time limit starts from the day you
    receive the request". Received Monday 3 March 2025 at 15:30, logged a week later: due 3 April 2025."""
    reviewer = logged_in(client, roles.REVIEWER)
    with committed():
        response = client.post(LOG_URL, form_data(channel="post", received_time="15:30"))
    rights_request = RightsRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "admin:dsr_requests_rightsrequest_change", args=[rights_request.pk]
    )
    assert rights_request.channel == "post"
    assert rights_request.received_at == datetime(2025, 3, 3, 15, 30, tzinfo=LONDON)
    assert (rights_request.statutory_due_on, rights_request.policy_due_on) == (
        date(2025, 4, 3),
        date(2025, 4, 14),
    )
    assert rights_request.events.get().note == "Request received by post, logged by staff"
    (message,) = mailoutbox
    assert message.to == ["ada@example.org"] and "/requests/confirm/?token=" in message.body
    event = AccessEvent.objects.get(action=AccessAction.TRANSITION)
    assert (event.user, event.object_repr, event.detail) == (
        reviewer,
        rights_request.reference,
        "log request",
    )

    page = client.get(response["Location"])
    assert any(
        "logged as received on 2025-03-03" in text and "2025-04-03" in text for text in messages_of(page)
    )
    assert "Post" in page.content.decode()


def test_a_request_logged_late_is_shown_overdue_at_once(client):
    """The deadline ran from receipt (6 January 2025, UK GDPR: 6 February); staff are told at once."""
    logged_in(client, roles.REVIEWER)
    response = client.post(LOG_URL, form_data(received_on="2025-01-06"), follow=True)
    assert any("32 days past the statutory date" in text for text in messages_of(response))
    rights_request = RightsRequest.objects.get()
    assert rights_request.reference in client.get(LIST_URL, {"due": "overdue"}).content.decode()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"received_on": "2025-03-11"}, "received_on", "cannot be in the future"),
        ({"received_on": "2025-03-10", "received_time": "10:30"}, "received_time", "cannot be in the future"),
        ({"received_on": "2024-03-09"}, "received_on", "more than 12 months ago"),
        ({"received_on": None}, "received_on", "This field is required"),
        ({"received_on": "03/03/2025x"}, "received_on", "Enter a valid date"),
        ({"email": None}, "email", "This field is required"),
        ({"email": "not-an-address"}, "email", "Enter a valid email address"),
        ({"channel": "web"}, "channel", "Select a valid choice"),
        ({"name": ""}, "name", "This field is required"),
        ({"request_type": "transfer"}, "transfer_to", "Please choose where the data should go"),
        ({"agent_name": "Agent Smith"}, "by_agent", "Tick this box"),
    ],
)
def test_bad_input_is_a_form_error_and_stores_nothing(
    client, committed, mailoutbox, overrides, field, message
):
    logged_in(client, roles.REVIEWER)
    with committed():
        response = client.post(LOG_URL, form_data(**overrides))
    assert response.status_code == 400
    assert any(message in error for error in response.context["form"].errors[field])
    assert "Nothing was stored" in response.content.decode()
    assert nothing_stored(mailoutbox)


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"agent_permission": None}, "agent_permission", "Upload the agent's written permission"),
        ({"agent_name": ""}, "agent_name", "Give the agent's name"),
        (
            {"agent_permission": SimpleUploadedFile("permission.pdf", b"<html>not a pdf</html>")},
            "agent_permission",
            "This file is not a PDF, PNG or JPEG",
        ),
        ({"agent_email": "ADA@example.org"}, "email", "This is the agent's address"),
        ({"agent_email": "nope"}, "agent_email", "Enter a valid email address"),
    ],
)
def test_bad_agent_input_is_a_form_error_and_stores_nothing(
    client, committed, mailoutbox, overrides, field, message
):
    logged_in(client, roles.REVIEWER)
    with committed():
        response = client.post(LOG_URL, agent_data(**overrides))
    assert response.status_code == 400
    assert any(message in error for error in response.context["form"].errors[field])
    assert nothing_stored(mailoutbox) and not IdentityDocument.objects.exists()


def test_a_bad_file_without_the_agent_box_ticked_is_still_refused(client, mailoutbox):
    logged_in(client, roles.REVIEWER)
    upload = SimpleUploadedFile("permission.txt", b"plain text")
    response = client.post(LOG_URL, form_data(agent_permission=upload))
    assert response.status_code == 400
    assert response.context["form"].errors["agent_permission"] and response.context["form"].errors["by_agent"]
    assert nothing_stored(mailoutbox)


def test_a_permission_over_the_upload_limit_is_a_form_error(client, settings, mailoutbox):
    settings.DSR_UPLOAD_MAX_BYTES = 40
    logged_in(client, roles.REVIEWER)
    response = client.post(LOG_URL, agent_data())
    assert response.status_code == 400
    assert "too large" in response.context["form"].errors["agent_permission"][0]
    assert nothing_stored(mailoutbox)


def test_a_body_too_large_for_any_acceptable_file_is_refused_unread(client, settings, mailoutbox):
    settings.DSR_UPLOAD_MAX_BYTES = 1024
    logged_in(client, roles.REVIEWER)
    big = SimpleUploadedFile("permission.pdf", b"%PDF-1.4\n" + b"x" * 100_000, content_type="application/pdf")
    response = client.post(LOG_URL, agent_data(agent_permission=big))
    assert response.status_code == 413
    assert "too large" in response.content.decode() and "Nothing was stored" in response.content.decode()
    assert nothing_stored(mailoutbox)


def test_staff_check_the_agents_permission_from_the_request_page(client, committed, mailoutbox):
    """CCPA regs §7063(a): staff see and check the agent's signed permission; it is deleted with the decision,
    and the request is for the person to verify: the agent is sent nothing."""
    reviewer = logged_in(client, roles.REVIEWER)
    with committed():
        client.post(LOG_URL, agent_data(request_type="processing"))
    rights_request = RightsRequest.objects.get()
    assert rights_request.by_agent and rights_request.agent_name == "Agent Smith"
    document = rights_request.identity_documents.get()
    assert document.kind == DocumentKind.AGENT_PERMISSION
    assert [message.to for message in mailoutbox] == [["ada@example.org"]]

    change_url = reverse("admin:dsr_requests_rightsrequest_change", args=[rights_request.pk])
    page = client.get(change_url).content.decode()
    download_url = reverse("admin:dsr_requests_rightsrequest_document", args=[rights_request.pk, document.pk])
    assert download_url in page and "Authorized agent&#x27;s written permission" in page
    assert "Agent Smith" in page and "Agent&#x27;s written permission accepted" in page
    response = client.get(download_url)
    assert response.content == PDF
    assert (
        f'filename="agent-permission-{rights_request.reference}-{document.pk}.pdf"'
        in (response["Content-Disposition"])
    )

    act = reverse("admin:dsr_requests_rightsrequest_act", args=[rights_request.pk, "agent_permission_passed"])
    response = client.post(act, {"expected_state": "submitted", "text": "Signed, names the person."})
    assert response.status_code == 302
    check = rights_request.identity_checks.get()
    assert (check.step, check.outcome, check.actor) == (IdentityStep.AGENT_PERMISSION, "passed", reviewer)
    assert not IdentityDocument.objects.exists()


def test_the_agents_details_are_personal_data_shown_only_with_that_permission(client):
    rights_request = RightsRequestFactory(channel="phone", by_agent=True, agent_name="Agent Smith")
    change_url = reverse("admin:dsr_requests_rightsrequest_change", args=[rights_request.pk])
    viewer(client)
    page = client.get(change_url).content.decode()
    assert "Agent Smith" not in page and "Phone" in page
    logged_in(client, roles.REVIEWER)
    assert "Agent Smith" in client.get(change_url).content.decode()
    assert "Agent Smith" not in client.get(LIST_URL).content.decode()


def test_the_list_filters_by_channel(client):
    logged_in(client, roles.REVIEWER)
    by_phone = RightsRequestFactory(channel="phone")
    by_web = RightsRequestFactory()
    body = client.get(LIST_URL, {"channel__exact": "phone"}).content.decode()
    assert by_phone.reference in body and by_web.reference not in body


# --- metrics ------------------------------------------------------------------------------------------


def _year_2024():
    def at(month, day):
        return datetime(2024, month, day, 10, tzinfo=LONDON)

    RightsRequestFactory(request_type="delete", state="completed", received_at=at(1, 2), closed_at=at(1, 12))
    RightsRequestFactory(request_type="delete", state="completed", received_at=at(2, 1), closed_at=at(2, 21))
    RightsRequestFactory(request_type="delete", state="in_review", received_at=at(3, 1))


def test_the_metrics_page_shows_the_year_and_links_its_csv(client):
    logged_in(client, roles.PRIVACY_ADMIN)
    _year_2024()
    response = client.get(METRICS_URL, {"year": "2024"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Requests received in 2024, by type" in body
    row = next(row for row in response.context["rows"] if row.request_type == "delete")
    assert (row.received, row.complied, row.still_open, row.median_days, row.mean_days) == (
        3,
        2,
        1,
        15.0,
        15.0,
    )
    assert f"{METRICS_URL}?year=2024&amp;format=csv" in body
    assert not AccessEvent.objects.filter(action=AccessAction.DOWNLOAD_EXPORT).exists()


def test_the_metrics_page_shows_the_previous_calendar_year_by_default(client):
    """CCPA regs §7102(a): the metrics are compiled for the previous calendar year."""
    logged_in(client, roles.PRIVACY_ADMIN)
    assert client.get(METRICS_URL).context["year"] == 2024


@pytest.mark.parametrize("year", ["", "abc", "1999", "2026", "20245", "2024'--"])
def test_a_bad_year_is_a_clear_message_not_a_500(client, year):
    logged_in(client, roles.PRIVACY_ADMIN)
    for params in ({"year": year}, {"year": year, "format": "csv"}):
        response = client.get(METRICS_URL, params)
        assert response.status_code == 400
        assert "Give a year from 2000 to 2025" in response.content.decode()
    assert not AccessEvent.objects.filter(action=AccessAction.DOWNLOAD_EXPORT).exists()


def test_the_metrics_csv_download_is_audited(client):
    admin = logged_in(client, roles.PRIVACY_ADMIN)
    _year_2024()
    response = client.get(METRICS_URL, {"year": "2024", "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="request-metrics-2024.csv"'
    lines = list(csv.DictReader(io.StringIO(response.content.decode())))
    delete = next(line for line in lines if line["request_type"] == "delete")
    assert (
        delete["received"],
        delete["complied_with_in_whole_or_in_part"],
        delete["median_days_to_respond"],
    ) == (
        "3",
        "2",
        "15.0",
    )
    event = AccessEvent.objects.get(action=AccessAction.DOWNLOAD_EXPORT)
    assert (event.user, event.detail) == (admin, "request metrics CSV 2024")


def test_the_metrics_need_the_request_log_permission(client):
    logged_in(client, roles.APPROVER)
    assert client.get(METRICS_URL, {"year": "2024"}).status_code == 403
    assert client.get(METRICS_URL, {"year": "2024", "format": "csv"}).status_code == 403
