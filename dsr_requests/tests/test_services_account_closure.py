"""The rights-request side of personal data reporting: which account IDs it contributes, and the erase
hook run when Atlassian reports an account closed (services, section "Atlassian account closure")."""

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection

from dsr_requests import services
from dsr_requests.models import IdentityCheck, RequestEvent, RequestState, RightsRequest
from dsr_requests.tests.factories import RightsRequestFactory
from registrations import personal_data

CLOSED = "557058:0e50fccb-239d-4991-a5db-dc850ba3f236"
OTHER = "5b10ac8d82e05b22cc7d4ef5"


@pytest.mark.django_db
def test_the_app_contributes_its_account_ids_to_the_report():
    [source] = [s for s in personal_data.sources() if s.name == "rights requests"]
    assert source.accounts is services.stored_atlassian_accounts
    assert source.erase is services.erase_closed_atlassian_account


@pytest.mark.django_db
def test_stored_accounts_are_one_row_per_account_and_site_with_the_latest_change():
    first, second, elsewhere = (
        RightsRequestFactory(account_id=CLOSED, site_client_key="site-a"),
        RightsRequestFactory(account_id=CLOSED, site_client_key="site-a"),
        RightsRequestFactory(account_id=CLOSED, site_client_key="site-b"),
    )
    RightsRequestFactory(account_id="")  # never bound: not reported
    for request, day in ((first, 1), (second, 2), (elsewhere, 3)):
        RightsRequest.objects.filter(pk=request.pk).update(updated_at=datetime(2026, 5, day, tzinfo=UTC))

    rows = sorted(services.stored_atlassian_accounts(), key=lambda row: row[2])

    assert rows == [
        (CLOSED, datetime(2026, 5, 2, tzinfo=UTC), "site-a"),
        (CLOSED, datetime(2026, 5, 3, tzinfo=UTC), "site-b"),
    ]


@pytest.mark.django_db
def test_a_closed_account_loses_its_id_on_every_request_and_each_gets_an_internal_event():
    requests = [
        RightsRequestFactory(
            account_id=CLOSED, site_client_key="site-a", verified_site_url="https://a.example"
        ),
        RightsRequestFactory(account_id=CLOSED, state=RequestState.COMPLETED),
    ]
    other = RightsRequestFactory(account_id=OTHER)
    IdentityCheck.objects.create(request=requests[0], step="account", method="code", outcome="passed")

    assert services.erase_closed_atlassian_account(account_id=CLOSED) == 2

    for request in requests:
        request.refresh_from_db()
        assert request.account_id == ""
        [event] = RequestEvent.objects.filter(request=request)
        assert event.note == "Atlassian account closed: account data erased" and CLOSED not in event.note
        assert not event.public and event.actor_kind == RequestEvent.ActorKind.SYSTEM
        assert event.from_state == event.to_state == request.state
    # What belongs to the requester or the site, and the fact that the proof passed, stay.
    assert requests[0].email and requests[0].name and requests[0].verified_site_url == "https://a.example"
    assert (
        requests[0].site_client_key == "site-a"
        and requests[0].identity_checks.filter(step="account").exists()
    )
    other.refresh_from_db()
    assert other.account_id == OTHER and not other.events.exists()


@pytest.mark.django_db
def test_erasing_an_account_that_is_not_stored_changes_nothing():
    RightsRequestFactory(account_id=OTHER)

    assert services.erase_closed_atlassian_account(account_id=CLOSED) == 0
    assert not RequestEvent.objects.exists()


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_erasures_of_the_same_account_at_once_write_one_event():
    request = RightsRequestFactory(account_id=CLOSED)
    barrier, outcomes = threading.Barrier(2), []

    def erase():
        try:
            barrier.wait()
            outcomes.append(services.erase_closed_atlassian_account(account_id=CLOSED))
        finally:
            connection.close()

    threads = [threading.Thread(target=erase) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == [0, 1]
    assert request.events.count() == 1
