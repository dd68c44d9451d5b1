"""Requester email rendering: every event has a subject, a plain-text and an HTML part."""

import pytest
from django.test import override_settings

from dsr_requests import emails
from dsr_requests.tests.factories import RightsRequestFactory

CONTEXT = {
    "confirm_url": "https://privacy.example.com/requests/confirm/?token=abc",
    "status_url": "https://privacy.example.com/requests/status/" + "a" * 64 + "/",
    "hours": 48,
    "close_after_days": 7,
    "question": "Which site?",
    "reason": "We hold <nothing>.",
    "due_on": None,
    "verified": False,
}


@pytest.mark.django_db
@pytest.mark.parametrize("event", sorted(emails.SUBJECTS))
def test_every_event_renders_a_subject_text_and_html_with_the_reference(event):
    request = RightsRequestFactory(name="Ada", state="verifying")
    subject, text, html = emails.render(event, request, **CONTEXT)
    assert request.reference in subject and request.reference in text and request.reference in html
    assert text.startswith("Dear Ada,") and "<html" not in text
    assert html.lstrip().startswith("<!DOCTYPE html>")


@pytest.mark.django_db
def test_html_part_escapes_what_the_text_part_shows_verbatim():
    request = RightsRequestFactory(name="<b>Ada</b>", state="verifying")
    _subject, text, html = emails.render("rejected", request, **CONTEXT)
    assert "We hold <nothing>." in text and "Dear <b>Ada</b>," in text
    assert "&lt;nothing&gt;" in html and "&lt;b&gt;Ada" in html


@pytest.mark.django_db
def test_unknown_event_is_refused():
    with pytest.raises(ValueError):
        emails.render("nonsense", RightsRequestFactory())


@override_settings(APP_BASE_URL="https://privacy.example.com/")
def test_links_are_built_from_app_base_url_with_the_query_encoded():
    url = emails.absolute_url("dsr_requests:confirm", query={"token": "a:b/c"})
    assert url == "https://privacy.example.com/requests/confirm/?token=a%3Ab%2Fc"


@pytest.mark.django_db
@pytest.mark.parametrize("event", ["received", "confirm_reminder"])
def test_an_unconfirmed_address_is_not_greeted_by_the_name_typed_into_the_form(event):
    """GDPR Art. 5(1)(f), Art. 12(6): until the address is confirmed it may belong to someone else, so the
    confirmation email carries no personal data, not even the name the form was given."""
    request = RightsRequestFactory(name="Ada Lovelace")
    _subject, text, html = emails.render(event, request, **CONTEXT)
    assert text.startswith("Hello,")
    assert "Ada" not in text and "Ada" not in html
