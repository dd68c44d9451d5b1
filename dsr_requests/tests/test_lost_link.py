"""Lost status links: a person gets fresh links by email, and the page never says whether they exist."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase as HypothesisTestCase

from dsr_requests import services
from dsr_requests.models import RequestState
from dsr_requests.tests.conftest import link_in
from dsr_requests.tests.test_views import VALID, _confirmed_status_path, _submit

pytestmark = pytest.mark.django_db


def _ask(client, committed, email):
    with committed():
        return client.post("/requests/status/", {"email": email})


def test_lost_link_sends_a_new_status_link_and_retires_the_old_one(client, committed, mailoutbox):
    old_path = _confirmed_status_path(client, committed, mailoutbox)
    assert client.get(old_path).status_code == 200
    before = len(mailoutbox)

    response = _ask(client, committed, VALID["email"].upper())

    assert response.status_code == 200
    assert "If we have requests for that address" in response.content.decode()
    assert len(mailoutbox) == before + 1
    message = mailoutbox[-1]
    assert message.to == [VALID["email"]] and "new status page link" in message.subject
    assert message.alternatives and message.alternatives[0][1] == "text/html"
    new_path = link_in(message.body, "/requests/status/")
    assert new_path != old_path
    assert client.get(new_path).status_code == 200
    assert client.get(old_path).status_code == 404


def test_lost_link_for_an_unconfirmed_request_resends_the_confirmation_link(client, committed, mailoutbox):
    _submit(client, committed)
    _ask(client, committed, VALID["email"])
    confirm = link_in(mailoutbox[-1].body, "/requests/confirm/")
    with committed():
        response = client.post(confirm)
    assert response.status_code == 302 and "/requests/status/" in response["Location"]


def test_lost_link_answers_the_same_for_an_unknown_address_and_sends_nothing(client, committed, mailoutbox):
    _confirmed_status_path(client, committed, mailoutbox)
    before = len(mailoutbox)
    known = _ask(client, committed, VALID["email"]).content.decode()
    unknown = _ask(client, committed, "nobody@example.org").content.decode()
    assert known.replace(VALID["email"], "") == unknown.replace("nobody@example.org", "")
    assert len(mailoutbox) == before + 1


def test_lost_link_skips_requests_whose_personal_data_is_erased(client, committed, mailoutbox):
    _submit(client, committed)
    rights_request = services.RightsRequest.objects.get()
    services.close_unverified_requests(now=rights_request.received_at + services.timedelta(days=30))
    rights_request.refresh_from_db()
    assert rights_request.state == RequestState.CLOSED_UNVERIFIED
    before = len(mailoutbox)
    assert services.resend_links(email=VALID["email"]) == 0
    assert len(mailoutbox) == before


def test_lost_link_form_shows_a_field_error_for_a_bad_address(client):
    response = client.post("/requests/status/", {"email": "not-an-address"})
    assert response.status_code == 200
    assert "There is a problem" in response.content.decode()


def test_lost_link_is_rate_limited_per_address(client, committed, settings):
    settings.DSR_RATE_SUBMIT_PER_EMAIL = "2/3600"
    codes = [_ask(client, committed, "someone@example.org").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


class LostLinkFuzzTests(HypothesisTestCase):
    @given(st.dictionaries(st.sampled_from(["email", "csrfmiddlewaretoken", "x"]), st.text(max_size=300)))
    def test_lost_link_never_answers_500(self, data):
        response = self.client.post("/requests/status/", data)
        assert response.status_code in (200, 429)
