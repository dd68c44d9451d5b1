"""Every follow-up email to the requester carries their status link and the date that applies.

Sent through the real SMTP server on loopback (the root conftest's ``smtp_server``); each link is opened.
"""

import re
from datetime import datetime

import pytest
import time_machine

from dsr_requests import roles, services
from dsr_requests.models import RequestState, RequestType, RightsRequest
from dsr_requests.tests.conftest import LONDON
from dsr_requests.tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db
STATUS_LINK = re.compile(r"http://testserver(/requests/status/[0-9a-f]{64}/)")


@pytest.fixture
def mail(smtp_server, settings):
    settings.APP_BASE_URL = "http://testserver"
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    return smtp_server


def _last(mail, count):
    message = mail.wait_for(count)[-1][1]
    return (
        message["Subject"],
        message.get_body(("plain",)).get_content(),
        message.get_body(("html",)).get_content(),
    )


def _submitted_and_confirmed(committed, request_type=RequestType.REVIEW):
    with committed():
        rights_request = services.submit_request(
            request_type=request_type,
            name="Ada",
            email="ada@example.org",
            details="",
            site_url="",
            concerns="",
            transfer_to="",
            transfer_email="",
            country="GB",
            actor=services.REQUESTER,
        )
    with committed():
        rights_request, token = services.confirm_email(reference=rights_request.reference)
    return rights_request, token


def _assert_link_opens(client, text, html, token):
    for body in (text, html):
        path = STATUS_LINK.search(body).group(1)
        assert path == f"/requests/status/{token}/"
    assert client.get(path).status_code == 200


@time_machine.travel(datetime(2025, 3, 3, 10, tzinfo=LONDON), tick=False)
def test_hold_extension_and_completion_emails_carry_the_status_link_and_their_date(
    mail, committed, client, uk_calendar
):
    approver = StaffUserFactory(roles=[roles.PRIVACY_ADMIN])
    rights_request, token = _submitted_and_confirmed(committed)
    sent = len(mail.messages)
    due = RightsRequest.objects.get(pk=rights_request.pk).effective_due_on
    _subject, text, html = _last(mail, sent)
    assert f"We will answer by {due:%-d %B %Y}" in text  # the confirmation: one more proof needed

    with committed():
        services.put_on_hold(
            rights_request=rights_request, actor=approver, message="Which site?", reason="clarification"
        )
    subject, text, html = _last(mail, sent + 1)
    assert "we need more information" in subject
    _assert_link_opens(client, text, html, token)
    assert f"Before this pause we were due to answer by {due:%-d %B %Y}" in text

    with committed():
        services.resume(rights_request=rights_request, actor=approver)
        extended = services.extend_deadline(
            rights_request=rights_request, actor=approver, reason="Many systems to search.", months=2
        )
    subject, text, html = _last(mail, sent + 2)
    assert "we need more time" in subject
    _assert_link_opens(client, text, html, token)
    assert f"We will now answer by {extended.effective_due_on:%-d %B %Y}" in text

    RightsRequest.objects.filter(pk=rights_request.pk).update(state=RequestState.FULFILLING)
    with committed():
        services.complete(rights_request=rights_request, actor=approver)
    subject, text, html = _last(mail, sent + 3)
    assert "is complete" in subject
    _assert_link_opens(client, text, html, token)
    assert "Completed on 3 March 2025." in text and "Completed on 3 March 2025." in html


@time_machine.travel(datetime(2025, 3, 3, 10, tzinfo=LONDON), tick=False)
def test_the_refusal_email_carries_the_status_link_and_the_date_of_the_decision(mail, committed, client):
    reviewer = StaffUserFactory(roles=[roles.REVIEWER])
    rights_request, token = _submitted_and_confirmed(committed)
    sent = len(mail.messages)
    with committed():
        services.reject(
            rights_request=rights_request, actor=reviewer, reason="We hold nothing.", ground="nothing_held"
        )
    subject, text, html = _last(mail, sent + 1)
    assert "rejected" in subject
    _assert_link_opens(client, text, html, token)
    assert "Decided on 3 March 2025." in text and "Decided on 3 March 2025." in html


def test_a_renewed_status_link_is_the_one_later_emails_carry(mail, committed, client):
    rights_request, old = _submitted_and_confirmed(committed)
    rights_request.refresh_from_db()
    with committed():
        new = services.renew_status_link(token=services.renewal_token(rights_request))
    assert new != old
    assert RightsRequest.objects.get(pk=rights_request.pk).status_token == new
    assert client.get(f"/requests/status/{new}/").status_code == 200
    assert client.get(f"/requests/status/{old}/").status_code == 404


def test_the_status_page_names_the_account_step_as_the_pages_it_sends_to_do(client, settings):
    from django.template.loader import render_to_string

    from dsr_requests import tokens
    from dsr_requests.tests.factories import RightsRequestFactory
    from registrations.descriptor import build_descriptor

    token, token_hash = tokens.new_status_token()
    RightsRequestFactory(state=RequestState.VERIFYING, status_token_hash=token_hash, status_token=token)
    body = client.get(f"/requests/status/{token}/").content.decode()
    menu_item = build_descriptor()["modules"]["generalPages"][0]["name"]["value"]
    assert f"our app's page “{menu_item}”" in body
    proof_page = render_to_string("dsr_requests/account_proof.html", {})
    title = re.search(r"<title>(.*?)</title>", proof_page, re.S).group(1).split("|")[0].strip()
    assert f"<h3>{title}</h3>" in body
    assert "Checking identity" in body  # the requester's name of the state
