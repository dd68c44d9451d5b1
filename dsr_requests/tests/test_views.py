"""The public pages: form, confirmation link, status page and its actions."""

from datetime import timedelta

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase as HypothesisTestCase

from dsr_requests import services, tokens
from dsr_requests.models import IdentityCheck, RequestState, RightsRequest, StaffQuestion
from dsr_requests.tests.conftest import link_in
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory
from dsr_requests.tests.test_journey import page_token
from registrations.models import Registration
from registrations.tests.factories import RegistrationFactory

VALID = {"request_type": "review", "name": "Ada Lovelace", "email": "ada@example.org", "details": "Hello"}


def _submit(client, committed, **overrides):
    with committed():
        return client.post("/requests/new/", {**VALID, **overrides})


def _confirmed_status_path(client, committed, mailoutbox, **overrides):
    _submit(client, committed, **overrides)
    confirm = link_in(mailoutbox[-1].body, "/requests/confirm/")
    with committed():
        response = client.post(confirm)
    return response["Location"]


# --- The form --------------------------------------------------------------------------------------


def test_form_has_labelled_fields_csrf_and_a_hidden_honeypot(client):
    response = client.get("/requests/new/")
    body = response.content.decode()
    assert response.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in body
    assert '<label for="id_email">' in body and "<legend>What would you like us to do?</legend>" in body
    assert 'class="hp" aria-hidden="true"' in body
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_valid_submission_stores_one_request_and_redirects_to_what_happens_next(
    client, committed, mailoutbox
):
    response = _submit(client, committed)
    assert response.status_code == 302 and response["Location"] == "/requests/sent/"
    assert RightsRequest.objects.count() == 1
    page = client.get("/requests/sent/").content.decode()
    assert "Check your email" in page and "If the address you gave is valid" in page
    assert len(mailoutbox) == 1


@pytest.mark.django_db
def test_the_page_after_submit_is_the_same_whether_or_not_the_email_had_requests(client, committed):
    first = _submit(client, committed)
    second = _submit(client, committed)
    assert first["Location"] == second["Location"]
    assert client.get(first["Location"]).content == client.get(second["Location"]).content


@pytest.mark.django_db
def test_invalid_submission_shows_field_errors_in_a_summary_and_keeps_what_was_typed(client):
    response = client.post("/requests/new/", {**VALID, "email": "not-an-email", "name": ""})
    body = response.content.decode()
    assert response.status_code == 200
    assert 'class="error-summary"' in body and 'href="#id_email"' in body
    assert 'aria-describedby="id_email_helptext id_email_error"' in body
    assert 'id="id_email_helptext"' in body and 'id="id_email_error"' in body
    assert 'value="not-an-email"' in body and "Hello</textarea>" in body
    assert RightsRequest.objects.count() == 0


@pytest.mark.django_db
def test_transfer_needs_a_destination_and_an_organisation_email(client):
    response = client.post("/requests/new/", {**VALID, "request_type": "transfer"})
    assert "Please choose where the data should go." in response.content.decode()
    response = client.post(
        "/requests/new/", {**VALID, "request_type": "transfer", "transfer_to": "organisation"}
    )
    assert "Please give the other organisation" in response.content.decode()
    assert RightsRequest.objects.count() == 0


@pytest.mark.django_db
def test_transfer_to_an_organisation_is_stored_with_its_email_encrypted(client, committed):
    _submit(
        client,
        committed,
        request_type="transfer",
        transfer_to="organisation",
        transfer_email="dpo@other.example",
    )
    request = RightsRequest.objects.get()
    assert (request.transfer_to, request.transfer_email) == ("organisation", "dpo@other.example")


@pytest.mark.django_db
def test_filled_honeypot_looks_like_success_but_stores_nothing(client, committed, mailoutbox):
    response = _submit(client, committed, website="http://spam.example")
    assert response.status_code == 302
    assert RightsRequest.objects.count() == 0 and mailoutbox == []


@pytest.mark.django_db
def test_too_many_submissions_from_one_address_get_a_clear_429(client, committed, settings, frozen_clock):
    settings.DSR_RATE_SUBMIT_PER_IP = "2/3600"
    for n in range(2):
        assert _submit(client, committed, email=f"p{n}@example.org").status_code == 302
    response = _submit(client, committed, email="p3@example.org")
    assert response.status_code == 429
    assert "too many requests from you in a short time" in response.content.decode()
    assert int(response["Retry-After"]) == 3600  # the clock stands at the start of the window
    assert RightsRequest.objects.count() == 2


@pytest.mark.django_db
def test_too_many_submissions_for_one_email_get_a_429_even_from_different_ips(
    client, committed, settings, frozen_clock
):
    settings.DSR_RATE_SUBMIT_PER_EMAIL = "1/3600"
    assert _submit(client, committed).status_code == 302
    with committed():
        response = client.post(
            "/requests/new/", {**VALID, "email": "ADA@example.org"}, REMOTE_ADDR="10.0.0.9"
        )
    assert response.status_code == 429
    assert RightsRequest.objects.count() == 1


@pytest.mark.django_db
def test_a_form_sent_back_with_errors_does_not_use_up_an_attempt(client, committed, settings, frozen_clock):
    settings.DSR_RATE_SUBMIT_PER_IP = "1/3600"
    settings.DSR_RATE_SUBMIT_PER_EMAIL = "1/3600"
    for _ in range(3):
        response = client.post("/requests/new/", {**VALID, "email": "not an address"})
        assert response.status_code == 200
    assert _submit(client, committed).status_code == 302
    assert RightsRequest.objects.count() == 1


@pytest.mark.django_db
def test_at_the_limit_the_form_keeps_what_was_typed_and_says_when_to_try_again(
    client, committed, settings, frozen_clock
):
    settings.DSR_RATE_SUBMIT_PER_IP = "1/3600"
    assert _submit(client, committed).status_code == 302
    with committed():
        response = client.post(
            "/requests/new/", {**VALID, "name": "Grace Hopper", "email": "grace@example.org"}
        )
    assert response.status_code == 429
    body = response.content.decode()
    assert 'value="Grace Hopper"' in body and 'value="grace@example.org"' in body
    minutes = -(-int(response["Retry-After"]) // 60)
    assert f"please send it again in about {minutes} minute" in body
    assert RightsRequest.objects.count() == 1


@pytest.mark.django_db
def test_an_attempt_refused_for_its_email_does_not_count_against_the_address(
    client, committed, settings, frozen_clock
):
    settings.DSR_RATE_SUBMIT_PER_IP = "2/3600"
    settings.DSR_RATE_SUBMIT_PER_EMAIL = "1/3600"
    assert _submit(client, committed).status_code == 302
    assert _submit(client, committed).status_code == 429  # same email: refused, the IP's count taken back
    assert _submit(client, committed, email="other@example.org").status_code == 302


@pytest.mark.django_db
def test_behind_a_proxy_the_last_forwarded_hop_is_the_client(client, committed, settings, frozen_clock):
    settings.DSR_BEHIND_PROXY = True
    settings.DSR_RATE_SUBMIT_PER_IP = "1/3600"
    spoofed = {"HTTP_X_FORWARDED_FOR": "1.1.1.1, 203.0.113.7"}
    assert _submit(client, committed).status_code == 302  # REMOTE_ADDR only
    with committed():
        first = client.post("/requests/new/", {**VALID, "email": "b@example.org"}, **spoofed)
        spoofed["HTTP_X_FORWARDED_FOR"] = "9.9.9.9, 203.0.113.7"
        second = client.post("/requests/new/", {**VALID, "email": "c@example.org"}, **spoofed)
    assert (first.status_code, second.status_code) == (302, 429)


@pytest.mark.django_db
def test_the_form_refuses_a_post_without_csrf_token():
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post("/requests/new/", VALID)
    assert response.status_code == 403


# --- Email confirmation ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_confirmation_link_shows_a_button_and_only_the_post_confirms(client, committed, mailoutbox):
    _submit(client, committed)
    confirm = link_in(mailoutbox[-1].body, "/requests/confirm/")
    page = client.get(confirm)
    assert page.status_code == 200 and "Confirm my email address" in page.content.decode()
    assert page["Referrer-Policy"] == "same-origin" and "no-store" in page["Cache-Control"]
    assert RightsRequest.objects.get().state == RequestState.SUBMITTED
    with committed():
        response = client.post(confirm)
    assert response.status_code == 302 and response["Location"].startswith("/requests/status/")
    assert RightsRequest.objects.get().state == RequestState.VERIFYING


@pytest.mark.django_db
def test_a_used_confirmation_link_is_refused_with_a_reason(client, committed, mailoutbox):
    _submit(client, committed)
    confirm = link_in(mailoutbox[-1].body, "/requests/confirm/")
    with committed():
        client.post(confirm)
        response = client.post(confirm)
    assert response.status_code == 400
    assert "already been used" in response.content.decode()


@pytest.mark.django_db
def test_an_expired_confirmation_link_is_refused_with_a_reason(client, committed, mailoutbox):
    _submit(client, committed)
    confirm = link_in(mailoutbox[-1].body, "/requests/confirm/")
    with time_machine.travel(timedelta(hours=49)):
        response = client.post(confirm)
    assert response.status_code == 400
    assert "expired" in response.content.decode()
    assert RightsRequest.objects.get().state == RequestState.SUBMITTED


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["", "garbage", "eyJyIjoiRFNSLUFBQUFBQSJ9:1xX9ya:forged"])
def test_a_malformed_or_forged_confirmation_link_gets_a_400(client, token):
    response = client.post(f"/requests/confirm/?token={token}")
    assert response.status_code == 400
    assert "not valid" in response.content.decode()


# --- Status page -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_status_page_shows_type_state_due_date_timeline_and_next_step(client, committed, mailoutbox):
    status_path = _confirmed_status_path(client, committed, mailoutbox)
    response = client.get(status_path)
    body = response.content.decode()
    request = RightsRequest.objects.get()
    assert response.status_code == 200
    assert request.get_request_type_display() in body and "Checking identity" in body
    # The date promised is the earlier of the policy and statutory dates: the one that binds.
    assert request.effective_due_on == min(request.policy_due_on, request.statutory_due_on)
    assert request.effective_due_on.strftime("%-d %B %Y") in body
    assert "Request received" in body and "Email address confirmed" in body
    assert "Show me a code" in body and "Send an identity document" in body
    assert response["Referrer-Policy"] == "same-origin" and "no-store" in response["Cache-Control"]
    assert "ada@example.org" not in body


@pytest.mark.django_db
def test_status_page_reads_a_bounded_number_of_queries(
    client, committed, mailoutbox, django_assert_max_num_queries
):
    status_path = _confirmed_status_path(client, committed, mailoutbox)
    with django_assert_max_num_queries(8):
        client.get(status_path)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "token", ["0" * 64, "f" * 63, "not-a-token", "A" * 64, "0" * 65, "%00", "..%2F..%2Fetc%2Fpasswd"]
)
def test_every_wrong_status_token_gets_the_same_404(client, committed, mailoutbox, token):
    _confirmed_status_path(client, committed, mailoutbox)
    response = client.get(f"/requests/status/{token}/")
    assert response.status_code == 404
    assert b"No request matches" not in response.content  # the friendly 404, no detail


@pytest.mark.django_db
def test_status_lookups_are_rate_limited(client, settings, frozen_clock):
    settings.DSR_RATE_STATUS_PER_IP = "3/60"
    codes = [client.get(f"/requests/status/{'0' * 64}/").status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]


@pytest.mark.django_db
def test_status_token_never_reaches_the_access_log(client, committed, mailoutbox, caplog):
    status_path = _confirmed_status_path(client, committed, mailoutbox)
    token = status_path.split("/")[3]
    from artemis_portal.logging import redact

    with caplog.at_level("INFO", logger="artemis.access"):
        client.get(status_path)
    assert all(token not in redact(record.getMessage()) for record in caplog.records)


@pytest.mark.django_db
def test_account_code_is_shown_once_on_the_page(client, committed, mailoutbox):
    status_path = _confirmed_status_path(client, committed, mailoutbox)
    response = client.post(status_path + "code/")
    body = response.content.decode()
    assert response.status_code == 200 and "Your one-time code" in body
    assert "Your one-time code" not in client.get(status_path).content.decode()


# --- Uploads ---------------------------------------------------------------------------------------

PDF = b"%PDF-1.7\n" + b"0" * 100
PNG = b"\x89PNG\r\n\x1a\n" + b"0" * 100
JPEG = b"\xff\xd8\xff\xe0" + b"0" * 100


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "content_type"), [(PDF, "application/pdf"), (PNG, "image/png"), (JPEG, "image/jpeg")]
)
def test_documents_are_accepted_by_their_content(client, committed, mailoutbox, content, content_type):
    status_path = _confirmed_status_path(client, committed, mailoutbox)
    upload = SimpleUploadedFile("id.bin", content, content_type="application/octet-stream")
    response = client.post(status_path + "document/", {"document": upload})
    assert response.status_code == 302
    document = RightsRequest.objects.get().identity_documents.get()
    assert (document.content_type, document.size) == (content_type, len(content))
    assert "we received your document" in client.get(status_path).content.decode()


@pytest.mark.django_db
def test_a_disguised_upload_is_refused(client, committed, mailoutbox):
    status_path = _confirmed_status_path(client, committed, mailoutbox)
    upload = SimpleUploadedFile("passport.pdf", b"MZ\x90\x00 an executable", content_type="application/pdf")
    response = client.post(status_path + "document/", {"document": upload})
    assert response.status_code == 400
    assert "This file is not a PDF, PNG or JPEG: please upload one of those, up to 5.0" in (
        response.content.decode()
    )
    assert not RightsRequest.objects.get().identity_documents.exists()


@pytest.mark.django_db
def test_an_oversized_upload_is_refused(client, committed, mailoutbox, settings):
    settings.DSR_UPLOAD_MAX_BYTES = 1024
    status_path = _confirmed_status_path(client, committed, mailoutbox)
    upload = SimpleUploadedFile("big.pdf", b"%PDF-" + b"0" * 2000, content_type="application/pdf")
    response = client.post(status_path + "document/", {"document": upload})
    assert response.status_code == 400
    assert "The file is too large: the limit is 1.0\xa0KB." in response.content.decode()
    huge = SimpleUploadedFile("huge.pdf", b"%PDF-" + b"0" * 200_000, content_type="application/pdf")
    response = client.post(status_path + "document/", {"document": huge})
    # The same page with the same form error, not an error page about the link.
    assert response.status_code == 413
    body = response.content.decode()
    assert "The file is too large: the limit is 1.0\xa0KB." in body and 'id="error-summary"' in body
    assert "cannot be used" not in body
    assert not RightsRequest.objects.get().identity_documents.exists()


# --- Answer and withdraw ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_requester_answers_a_staff_question_from_the_status_page(client, committed, mailoutbox):
    status_path = _confirmed_status_path(client, committed, mailoutbox)
    request = RightsRequest.objects.get()
    services.transition(
        rights_request=request, to_state=RequestState.ON_HOLD, actor=StaffUserFactory(), hold_reason="other"
    )
    question = StaffQuestion.objects.create(
        request=request, question="Which site?", asked_by=StaffUserFactory()
    )
    assert "Which site?" in client.get(status_path).content.decode()
    response = client.post(status_path + "answer/", {"question": question.pk, "answer": "acme"})
    assert response.status_code == 302
    question.refresh_from_db()
    assert question.answer == "acme"
    request.refresh_from_db()
    assert request.state == RequestState.VERIFYING


@pytest.mark.django_db
def test_a_question_of_another_request_cannot_be_answered(client, committed, mailoutbox):
    status_path = _confirmed_status_path(client, committed, mailoutbox)
    other = StaffQuestion.objects.create(
        request=RightsRequestFactory(), question="Other?", asked_by=StaffUserFactory()
    )
    response = client.post(status_path + "answer/", {"question": other.pk, "answer": "x"})
    assert response.status_code == 404


@pytest.mark.django_db
def test_withdrawal_needs_the_tick_and_then_withdraws(client, committed, mailoutbox):
    status_path = _confirmed_status_path(client, committed, mailoutbox)
    assert client.post(status_path + "withdraw/", {}).status_code == 400
    assert RightsRequest.objects.get().state == RequestState.VERIFYING
    with committed():
        response = client.post(status_path + "withdraw/", {"confirm": "on"})
    assert response.status_code == 302
    assert RightsRequest.objects.get().state == RequestState.WITHDRAWN
    page = client.get(status_path).content.decode()
    assert "Withdrawn" in page and "Withdraw this request" not in page


# --- Never a 500 -----------------------------------------------------------------------------------

FIELDS = [
    "request_type",
    "name",
    "email",
    "country",
    "site_url",
    "concerns",
    "details",
    "transfer_to",
    "transfer_email",
    "website",
]


class TestFormNeverFails(HypothesisTestCase):
    """Whatever arrives in any field, the form answers 200, 302 or 429, never a 500."""

    @hypothesis_settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
    @given(st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=300)))
    def test_any_field_values(self, data):
        from django.core.cache import cache

        cache.clear()
        response = self.client.post("/requests/new/", data)
        assert response.status_code in (200, 302)

    @hypothesis_settings(max_examples=60)
    @given(
        st.text(alphabet=st.characters(codec="ascii", exclude_characters="/?#%"), min_size=1, max_size=100)
    )
    def test_any_status_token(self, token):
        from django.core.cache import cache

        cache.clear()
        response = self.client.get(f"/requests/status/{token}/")
        assert response.status_code == 404

    @hypothesis_settings(max_examples=60)
    @given(st.text(max_size=60))
    def test_any_account_code(self, code):
        from django.core.cache import cache

        cache.clear()
        tenant = Registration.objects.first() or RegistrationFactory()
        response = _connect_post(self.client, tenant, code)
        assert response.status_code == 400

    @hypothesis_settings(max_examples=40)
    @given(st.binary(max_size=200))
    def test_any_uploaded_bytes(self, content):
        from django.core.cache import cache

        cache.clear()
        request = RightsRequestFactory(state=RequestState.VERIFYING)
        token, request.status_token_hash = tokens.new_status_token()
        request.save()
        upload = SimpleUploadedFile("f", content)
        response = self.client.post(f"/requests/status/{token}/document/", {"document": upload})
        assert response.status_code in (302, 400)


# --- The Connect app's account-proof page ----------------------------------------------------------


def _code_for(site_url=""):
    request = RightsRequestFactory(state=RequestState.VERIFYING, site_url=site_url)
    IdentityCheck.objects.create(request=request, step="email", method="test", outcome="passed")
    return request, services.issue_account_code(rights_request=request)


def _connect_post(client, tenant, code, *, sub="557058:abc"):
    token = page_token(tenant, sub=sub)
    return client.post(f"/connect/identity-proof/?jwt={token}", {"code": code})


@pytest.mark.django_db
def test_connect_page_needs_a_valid_tenant_jwt(client):
    assert client.post("/connect/identity-proof/", {"code": "ABCD"}).status_code == 401


@pytest.mark.django_db
def test_a_code_entered_twice_is_refused_the_second_time(client):
    request, code = _code_for()
    tenant = RegistrationFactory()
    assert _connect_post(client, tenant, code).status_code == 200
    response = _connect_post(client, tenant, code)
    assert response.status_code == 400 and "already been used" in response.content.decode()


@pytest.mark.django_db
def test_a_code_entered_from_another_site_than_the_request_names_is_refused(client):
    request, code = _code_for(site_url="https://navy.atlassian.net")
    response = _connect_post(client, RegistrationFactory(base_url="https://army.atlassian.net/wiki"), code)
    assert response.status_code == 400 and "another Atlassian site" in response.content.decode()
    request.refresh_from_db()
    assert request.state == RequestState.VERIFYING and request.account_id == ""


@pytest.mark.django_db
def test_a_wrong_code_gets_a_field_error(client):
    _code_for()
    response = _connect_post(client, RegistrationFactory(), "WRONG123")
    assert response.status_code == 400 and "This code is not valid" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("sub", [..., "", "<script>"])
def test_without_a_usable_account_the_page_asks_to_log_in_and_binds_nothing(client, sub):
    request, code = _code_for()
    response = _connect_post(client, RegistrationFactory(), code, sub=sub)
    assert response.status_code == 403 and "Log in to this Atlassian site" in response.content.decode()
    request.refresh_from_db()
    assert request.account_id == ""


@pytest.mark.django_db
def test_a_token_whose_account_id_no_column_can_hold_is_refused_and_binds_nothing(client):
    request, code = _code_for()
    response = _connect_post(client, RegistrationFactory(), code, sub="x" * 200)
    assert response.status_code == 401
    request.refresh_from_db()
    assert request.account_id == ""


@pytest.mark.django_db
def test_code_guessing_is_rate_limited_per_account(client, settings, frozen_clock):
    settings.DSR_RATE_CODE_PER_ACCOUNT = "2/900"
    _code_for()
    tenant = RegistrationFactory()
    codes = [_connect_post(client, tenant, "WRONG123").status_code for _ in range(3)]
    assert codes == [400, 400, 429]


@pytest.mark.django_db
def test_a_submission_writes_a_bounded_number_of_queries(client, committed, django_assert_max_num_queries):
    with django_assert_max_num_queries(10):
        assert _submit(client, committed).status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("question", ["x", "-1", str(2**70), ""])
def test_a_malformed_question_id_is_a_400_not_a_500(client, committed, mailoutbox, question):
    status_path = _confirmed_status_path(client, committed, mailoutbox)
    assert client.post(status_path + "answer/", {"question": question, "answer": "a"}).status_code == 400
