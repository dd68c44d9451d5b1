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


def _renew(client, committed, renewal_path, *, method="post"):
    with committed():
        return getattr(client, method)(renewal_path)


def test_lost_link_sends_a_renewal_link_and_the_old_link_works_until_the_owner_opens_it(
    client, committed, mailoutbox
):
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
    renewal_path = link_in(message.body, "/requests/renew/")
    # Asking, and even a mail scanner's GET of the renewal link, leave the current link working.
    assert client.get(old_path).status_code == 200
    assert _renew(client, committed, renewal_path, method="get").status_code == 200
    assert client.get(old_path).status_code == 200

    opened = _renew(client, committed, renewal_path)

    assert opened.status_code == 302
    new_path = opened["Location"]
    assert new_path.startswith("/requests/status/") and new_path != old_path
    assert client.get(new_path).status_code == 200
    assert client.get(old_path).status_code == 404
    # The renewal link is single-use: it was bound to the token it replaced.
    again = _renew(client, committed, renewal_path)
    assert again.status_code == 400 and "no longer valid" in again.content.decode()
    assert client.get(new_path).status_code == 200


def test_attack_anyone_asking_for_links_again_and_again_cannot_cut_the_owner_off(
    client, committed, mailoutbox, settings
):
    """Security round two, item 1: each ask used to retire the owner's link at once."""
    settings.DSR_RATE_SUBMIT_PER_EMAIL = "100/3600"
    settings.DSR_RATE_SUBMIT_PER_IP = "100/3600"
    old_path = _confirmed_status_path(client, committed, mailoutbox)
    for _attempt in range(5):
        assert _ask(client, committed, VALID["email"]).status_code == 200
    assert client.get(old_path).status_code == 200


def test_a_forged_or_tampered_renewal_link_is_refused_with_a_clear_reason(client, committed, mailoutbox):
    old_path = _confirmed_status_path(client, committed, mailoutbox)
    _ask(client, committed, VALID["email"])
    renewal_path = link_in(mailoutbox[-1].body, "/requests/renew/")
    for path in (renewal_path[:-3], "/requests/renew/?token=x", "/requests/renew/"):
        response = _renew(client, committed, path)
        assert response.status_code == 400 and "not valid" in response.content.decode()
    assert client.get(old_path).status_code == 200


def test_attack_timing_known_and_unknown_addresses_do_the_same_work_and_send_nothing_on_the_request_path(
    client, committed, mailoutbox, settings
):
    """Security round two, item 1: the answer took ~15 ms with requests, ~9 ms without.

    Not a stopwatch: the request path must run the same queries and return the same bytes whatever the
    address, and send no email itself; the queued job (the address's blind index only) does the rest.
    """
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils.module_loading import import_string
    from django_tasks_db.models import DBTaskResult

    _confirmed_status_path(client, committed, mailoutbox)
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    before = len(mailoutbox)

    def ask(email):
        with CaptureQueriesContext(connection) as queries:
            response = _ask(client, committed, email)
        return response, [query["sql"].split(" ")[0] for query in queries.captured_queries]

    known, known_queries = ask(VALID["email"])
    unknown, unknown_queries = ask("nobody@example.org")

    assert known.status_code == unknown.status_code == 200
    assert known.content == unknown.content
    assert known_queries == unknown_queries
    assert len(mailoutbox) == before
    jobs = list(DBTaskResult.objects.order_by("enqueued_at"))
    assert [job.task_path for job in jobs] == ["dsr_requests.tasks.send_lost_links"] * 2
    assert VALID["email"] not in str([job.args_kwargs for job in jobs])

    # The worker's part, as db_worker would run it (the command itself closes the test's connection on
    # PostgreSQL): each queued job by its path and arguments, the lookup first, then the email it queued.
    done = set()
    for _round in range(2):
        for job in DBTaskResult.objects.exclude(pk__in=done).order_by("enqueued_at"):
            done.add(job.pk)
            with committed():
                import_string(job.task_path).call(*job.args_kwargs["args"], **job.args_kwargs["kwargs"])

    assert len(mailoutbox) == before + 1 and mailoutbox[-1].to == [VALID["email"]]


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
    known = _ask(client, committed, VALID["email"]).content
    unknown = _ask(client, committed, "nobody@example.org").content
    assert known == unknown
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


def test_lost_link_is_rate_limited_per_address(client, committed, settings, frozen_clock):
    settings.DSR_RATE_SUBMIT_PER_EMAIL = "2/3600"
    codes = [_ask(client, committed, "someone@example.org").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


class LostLinkFuzzTests(HypothesisTestCase):
    @given(st.dictionaries(st.sampled_from(["email", "csrfmiddlewaretoken", "x"]), st.text(max_size=300)))
    def test_lost_link_never_answers_500(self, data):
        response = self.client.post("/requests/status/", data)
        assert response.status_code in (200, 429)
