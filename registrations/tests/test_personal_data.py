"""Personal data reporting against a real HTTP server on loopback that verifies every Connect JWT."""

import json
import logging
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from dsr_requests.models import RequestEvent, RightsRequest
from dsr_requests.tests.factories import RightsRequestFactory
from registrations import personal_data
from registrations.models import PersonalDataReport, Registration
from registrations.tests.factories import RegistrationFactory

pytestmark = pytest.mark.django_db

UPDATED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def account():
    return "557058:" + str(uuid.uuid4())


def tenant_at(api, name, **fields):
    """A tenant whose base URL is the stand-in server (plain http on loopback: built directly)."""
    secret = secrets.token_urlsafe(32)
    return RegistrationFactory(base_url=api.site(name, secret), shared_secret=secret, **fields)


def bind(tenant, *account_ids, **fields):
    """A rights request per account ID, bound (as the account proof does) on ``tenant``."""
    return [
        RightsRequestFactory(
            account_id=account_id,
            site_client_key=tenant.client_key if tenant else "",
            verified_site_url=tenant.base_url if tenant else "",
            **fields,
        )
        for account_id in account_ids
    ]


def sent_ids(api):
    return [entry["accountId"] for call in api.received for entry in call["body"]["accounts"]]


def schedule():
    return PersonalDataReport.objects.get(pk=1)


def test_every_stored_account_is_reported_once_in_signed_batches_of_at_most_90(reporting_api):
    tenant = tenant_at(reporting_api, "acme")
    ids = [account() for _ in range(200)]
    bind(tenant, *ids)

    run = personal_data.report()

    assert run.accounts == 200 and run.failed_batches == 0
    assert [len(call["body"]["accounts"]) for call in reporting_api.received] == [90, 90, 20]
    assert sorted(sent_ids(reporting_api)) == sorted(ids)
    assert reporting_api.rejected == []  # every token verified: HS256, iss, exp, qsh
    for call in reporting_api.received:
        for entry in call["body"]["accounts"]:
            assert set(entry) == {"accountId", "updatedAt"} and UPDATED_AT.fullmatch(entry["updatedAt"])


def test_updated_at_is_when_the_requests_holding_the_account_last_changed(reporting_api):
    tenant = tenant_at(reporting_api, "acme")
    account_id = account()
    older, newer = bind(tenant, account_id, account_id)
    RightsRequest.objects.filter(pk=older.pk).update(
        updated_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    )
    RightsRequest.objects.filter(pk=newer.pk).update(
        updated_at=datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)
    )

    personal_data.report()

    [call] = reporting_api.received
    assert call["body"]["accounts"] == [{"accountId": account_id, "updatedAt": "2026-03-04T05:06:07.891Z"}]


def test_each_account_is_reported_through_the_site_it_was_bound_on(reporting_api):
    acme, globex = tenant_at(reporting_api, "acme"), tenant_at(reporting_api, "globex")
    on_acme, on_globex = account(), account()
    bind(acme, on_acme)
    bind(globex, on_globex)

    personal_data.report()

    assert {call["site"]: sent_ids_of(call) for call in reporting_api.received} == {
        "acme": [on_acme],
        "globex": [on_globex],
    }


def sent_ids_of(call):
    return [entry["accountId"] for entry in call["body"]["accounts"]]


def test_an_account_whose_site_is_gone_is_reported_through_another_active_site(reporting_api):
    gone = tenant_at(reporting_api, "gone", state=Registration.State.UNINSTALLED)
    disabled = tenant_at(reporting_api, "off", state=Registration.State.DISABLED)
    tenant_at(reporting_api, "acme")
    account_id = account()
    bind(gone, account_id)
    bind(disabled, account())
    bind(None, account())  # bound without a site

    run = personal_data.report()

    assert run.failed_batches == 0 and run.unroutable == 0
    assert {call["site"] for call in reporting_api.received} == {"acme"}
    assert len(sent_ids(reporting_api)) == 3


def test_with_no_active_site_the_report_is_skipped_with_a_log_line_and_stays_due(reporting_api, caplog):
    tenant = tenant_at(reporting_api, "gone", state=Registration.State.UNINSTALLED)
    bind(tenant, account(), account())

    with caplog.at_level(logging.INFO, logger="artemis.personal_data"):
        run = personal_data.report()

    assert reporting_api.received == [] and run.unroutable == 2 and run.failed_batches == 0
    assert "no installed and enabled site to report 2 account(s) through" in caplog.text
    assert schedule().next_due_at <= timezone.now() + timedelta(minutes=61)


def test_a_closed_account_is_erased_and_an_updated_one_is_left_alone(reporting_api):
    tenant = tenant_at(reporting_api, "acme")
    closed, updated, untouched = account(), account(), account()
    [closed_request] = bind(tenant, closed)
    [updated_request] = bind(tenant, updated)
    bind(tenant, untouched)
    reporting_api.closed, reporting_api.updated = {closed}, {updated}

    run = personal_data.report()

    [batch] = run.batches
    assert (batch.closed, batch.erased, batch.updated) == (1, 1, 1)
    closed_request.refresh_from_db()
    assert closed_request.account_id == ""
    assert (
        closed_request.name and closed_request.email and closed_request.site_client_key == tenant.client_key
    )
    event = RequestEvent.objects.get(request=closed_request)
    assert event.note == "Atlassian account closed: account data erased"
    assert not event.public and event.actor_kind == RequestEvent.ActorKind.SYSTEM and closed not in event.note
    updated_request.refresh_from_db()
    assert updated_request.account_id == updated
    assert not RequestEvent.objects.filter(request=updated_request).exists()
    assert set(RightsRequest.objects.exclude(account_id="").values_list("account_id", flat=True)) == {
        updated,
        untouched,
    }


def test_a_closed_account_is_erased_from_every_request_and_every_contributing_app(reporting_api, monkeypatch):
    tenant = tenant_at(reporting_api, "acme")
    closed = account()
    bind(tenant, closed, closed)
    other_app = {closed: datetime(2030, 1, 1, tzinfo=UTC)}  # a later update than any request's
    monkeypatch.setitem(
        personal_data._sources,
        "other app",
        personal_data.AccountSource(
            "other app",
            accounts=lambda: [(a, when, "") for a, when in other_app.items()],
            erase=lambda *, account_id: 1 if other_app.pop(account_id, None) else 0,
        ),
    )
    reporting_api.closed = {closed}

    run = personal_data.report()

    [call] = reporting_api.received
    assert call["body"]["accounts"] == [{"accountId": closed, "updatedAt": "2030-01-01T00:00:00.000Z"}]
    assert run.batches[0].erased == 3 and other_app == {}
    assert not RightsRequest.objects.filter(account_id=closed).exists()


def test_an_erase_hook_that_fails_fails_the_batch_after_the_other_hooks_ran(reporting_api, monkeypatch):
    tenant = tenant_at(reporting_api, "acme")
    closed = account()
    bind(tenant, closed)

    def broken(*, account_id):
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(personal_data._sources, "broken", personal_data.AccountSource("broken", list, broken))
    reporting_api.closed = {closed}

    run = personal_data.report()

    assert run.failed_batches == 1 and "broken" in run.batches[0].error
    assert not RightsRequest.objects.filter(account_id=closed).exists()  # the rights-request hook still ran
    assert schedule().next_due_at <= timezone.now() + timedelta(minutes=61)


def test_cycle_period_decides_when_the_next_report_is_due(reporting_api):
    tenant = tenant_at(reporting_api, "acme")
    bind(tenant, account())
    reporting_api.cycle = "48"

    with time_machine.travel(datetime(2026, 6, 1, 12, 0, tzinfo=UTC), tick=False):
        run = personal_data.report()
        assert run.next_due_at == datetime(2026, 6, 3, 12, 0, tzinfo=UTC)
        assert schedule().cycle_period_hours == 48
    with time_machine.travel(datetime(2026, 6, 3, 11, 59, tzinfo=UTC), tick=False):
        early = personal_data.report()
    assert not early.due and len(reporting_api.received) == 1
    with time_machine.travel(datetime(2026, 6, 3, 12, 0, tzinfo=UTC), tick=False):
        assert personal_data.report().due
    assert len(reporting_api.received) == 2


def test_the_shortest_cycle_period_of_the_batches_wins_and_a_missing_one_means_the_default(
    reporting_api, settings
):
    settings.PERSONAL_DATA_DEFAULT_CYCLE_HOURS = 100
    tenant = tenant_at(reporting_api, "acme")
    bind(tenant, *[account() for _ in range(180)])
    reporting_api.script = [(204, {"Cycle-Period": "300"}, b""), (204, {}, b"")]

    with time_machine.travel(datetime(2026, 6, 1, tzinfo=UTC), tick=False):
        run = personal_data.report()

    assert run.failed_batches == 0
    assert run.next_due_at == datetime(2026, 6, 1, tzinfo=UTC) + timedelta(hours=100)


def test_rate_limiting_stops_the_run_and_keeps_everything_for_after_retry_after(reporting_api):
    tenant = tenant_at(reporting_api, "acme")
    closed = account()
    bind(tenant, closed, *[account() for _ in range(200)])
    reporting_api.closed = {closed}
    reporting_api.script = [(429, {"Retry-After": "7200"}, b"slow down")]

    with time_machine.travel(datetime(2026, 6, 1, tzinfo=UTC), tick=False):
        run = personal_data.report()

    assert len(reporting_api.received) == 1  # nothing more was sent after the 429
    assert run.failed_batches == 3 and [b.error for b in run.batches][1:] == ["not sent: rate-limited"] * 2
    assert run.next_due_at == datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
    assert RightsRequest.objects.filter(account_id=closed).exists()
    with time_machine.travel(datetime(2026, 6, 1, 1, 59, tzinfo=UTC), tick=False):
        assert not personal_data.report().due
    with time_machine.travel(datetime(2026, 6, 1, 2, 0, tzinfo=UTC), tick=False):
        again = personal_data.report()
    assert again.failed_batches == 0 and len(reporting_api.received) == 4
    assert not RightsRequest.objects.filter(account_id=closed).exists()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ((500, {}, b"oops"), "the site answered HTTP 500"),
        ((503, {"Cycle-Period": "1"}, b""), "the site answered HTTP 503"),
        ((302, {"Location": "https://elsewhere.example/"}, b""), "the site answered HTTP 302"),
        ((200, {}, b"<html>maintenance</html>"), "the answer is not JSON"),
        ((200, {}, b'{"accounts": {"a": 1}}'), "the answer has no list of accounts"),
        ((200, {}, b'{"accounts": [{"accountId": 7, "status": "closed"}]}'), "without an accountId"),
    ],
)
def test_a_failed_batch_is_sent_again_on_the_next_run_and_loses_nothing(
    reporting_api, settings, answer, error
):
    settings.PERSONAL_DATA_RETRY_MINUTES = 30
    tenant = tenant_at(reporting_api, "acme")
    closed = "557058:00000000-0000-4000-8000-000000000000"  # sorts first: in the batch that fails
    bind(tenant, closed, *[account() for _ in range(100)])
    reporting_api.closed = {closed}
    reporting_api.script = [answer]

    with time_machine.travel(datetime(2026, 6, 1, tzinfo=UTC), tick=False):
        run = personal_data.report()

    assert [b.ok for b in run.batches] == [False, True] and error in run.batches[0].error
    assert run.next_due_at == datetime(2026, 6, 1, 0, 30, tzinfo=UTC)
    assert schedule().last_failed_batches == 1
    assert RightsRequest.objects.filter(account_id=closed).exists()  # its batch failed: not erased yet
    with time_machine.travel(datetime(2026, 6, 1, 0, 30, tzinfo=UTC), tick=False):
        again = personal_data.report()
    assert again.failed_batches == 0
    assert not RightsRequest.objects.filter(account_id=closed).exists()


def test_an_unreachable_site_fails_its_batch_with_one_line(reporting_api, settings):
    settings.CONNECT_OUTBOUND_TIMEOUT = 0.5
    tenant = RegistrationFactory(base_url="http://127.0.0.1:9/wiki")  # the discard port: nobody listens
    bind(tenant, account())

    run = personal_data.report()

    [batch] = run.batches
    assert batch.error.startswith("could not reach the site (") and "\n" not in batch.error
    assert run.next_due_at is not None


def test_an_answer_naming_an_account_that_was_not_sent_erases_nothing(reporting_api):
    # Batches go out in client key order: the scripted answer goes to "acme"'s, which lacks ``other``.
    tenant = tenant_at(reporting_api, "acme", client_key="a-acme")
    elsewhere = tenant_at(reporting_api, "globex", client_key="b-globex")
    sent, other = account(), account()
    bind(tenant, sent)
    bind(elsewhere, other)
    body = json.dumps({"accounts": [{"accountId": other, "status": "closed"}]}).encode()
    reporting_api.script = [(200, {"Cycle-Period": "168"}, body), (204, {"Cycle-Period": "168"}, b"")]

    run = personal_data.report()

    assert run.failed_batches == 0 and run.batches[0].closed == 0
    assert RightsRequest.objects.filter(account_id=other).exists()


def test_stored_values_not_shaped_like_account_ids_are_left_out(reporting_api):
    tenant = tenant_at(reporting_api, "acme")
    good = account()
    bind(tenant, good, "has space", "a/b", "ada@example.org")

    personal_data.report()

    assert sent_ids(reporting_api) == [good]


def test_with_no_account_stored_nothing_is_sent_and_the_report_stays_due(reporting_api):
    tenant_at(reporting_api, "acme")

    run = personal_data.report()

    assert run.due and run.accounts == 0 and reporting_api.received == []
    assert schedule().next_due_at is None


def test_a_report_that_is_running_or_not_due_is_not_started_again(reporting_api):
    tenant = tenant_at(reporting_api, "acme")
    bind(tenant, account())
    PersonalDataReport.objects.create(pk=1, next_due_at=timezone.now() + timedelta(minutes=5))

    assert not personal_data.report().due
    assert reporting_api.received == []
    assert personal_data.report(force=True).due and len(reporting_api.received) == 1


def test_the_log_names_account_ids_but_never_emails_names_or_secrets(reporting_api, caplog):
    tenant = tenant_at(reporting_api, "acme")
    closed = account()
    [request] = bind(tenant, closed, name="Ada Lovelace", email="ada@example.org")
    reporting_api.closed = {closed}

    with caplog.at_level(logging.DEBUG):
        personal_data.report()

    assert closed in caplog.text
    for private in ("ada@example.org", "Ada Lovelace", tenant.shared_secret, "eyJ"):
        assert private not in caplog.text


def test_query_count_does_not_grow_with_accounts_or_sites(reporting_api, django_assert_max_num_queries):
    tenants = [tenant_at(reporting_api, f"site{n}") for n in range(10)]
    for n in range(300):
        bind(tenants[n % 10], account())

    with django_assert_max_num_queries(8):
        run = personal_data.report()

    assert run.accounts == 300 and run.total_batches == 10 and run.failed_batches == 0


# --- the answer parser ------------------------------------------------------------------------------


def test_retry_after_reads_seconds_and_http_dates_within_a_week():
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert personal_data.parse_retry_after("120", now=now) == timedelta(seconds=120)
    assert personal_data.parse_retry_after("Mon, 01 Jun 2026 01:00:00 GMT", now=now) == timedelta(hours=1)
    assert personal_data.parse_retry_after("Sun, 31 May 2026 00:00:00 GMT", now=now) == timedelta(0)
    assert personal_data.parse_retry_after("99999999", now=now) == timedelta(days=7)
    assert personal_data.parse_retry_after("soon", now=now) is None
    assert personal_data.parse_retry_after(None, now=now) is None


@pytest.mark.parametrize(
    ("value", "hours"),
    [("168", 168), (" 24 ", 24), ("0", 1), ("99999999", 24 * 365), ("7d", None), ("-1", None)],
)
def test_cycle_period_is_whole_hours_within_bounds(value, hours):
    assert personal_data.parse_cycle_period(value) == hours


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
entries = st.fixed_dictionaries(
    {"accountId": st.sampled_from(["a1", "a2", "a3"]) | st.text(max_size=10) | json_values},
    optional={"status": st.sampled_from(["closed", "updated", "deleted"]) | json_values},
)
bodies = (
    st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.builds(lambda items: json.dumps({"accounts": items}).encode(), st.lists(entries, max_size=6))
)


@given(
    status=st.sampled_from([200, 204, 429, 400, 401, 500, 503]) | st.integers(min_value=-1, max_value=1000),
    headers=st.dictionaries(
        st.sampled_from(["Cycle-Period", "Retry-After", "Content-Type", "X-Other"]), st.text(max_size=40)
    ),
    body=bodies,
)
def test_the_answer_parser_raises_nothing_but_report_error_and_acts_only_on_sent_accounts(
    status, headers, body
):
    sent = {"a1", "a2"}
    try:
        answer = personal_data.parse_answer(status, CaseInsensitiveDict(headers), body, sent=sent)
    except personal_data.ReportError as exc:
        assert str(exc) and "\n" not in str(exc)
        if isinstance(exc, personal_data.RateLimited) and exc.retry_after is not None:
            assert timedelta(0) <= exc.retry_after <= timedelta(days=7)
        return
    assert status in (200, 204)
    assert set(answer.closed) <= sent and set(answer.updated) <= sent
    assert answer.cycle_hours is None or 1 <= answer.cycle_hours <= 24 * 365
