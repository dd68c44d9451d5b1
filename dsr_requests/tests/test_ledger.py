"""What rights requests' erasures write to the erasure ledger, and that the erasure survives a restore.

The restore test uses a real backup written by ``backup_registrations`` before the deletion request is
fulfilled and restored by ``restore_registrations`` afterwards.
"""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from dsr_requests import roles, services
from dsr_requests.models import Concerns, RequestState, RequestType, RightsRequest
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory, approved_request
from registrations import erasure_ledger
from registrations import services as connect_services
from registrations.models import ErasureLedgerEntry, Registration
from registrations.tests import conftest as connect_fixtures
from registrations.tests.factories import RegistrationFactory

S = RequestState
Kind = ErasureLedgerEntry.Kind
backup_dir = connect_fixtures.backup_dir  # the registrations tests' fixture, shared
run = connect_fixtures.run
pytestmark = pytest.mark.django_db


def fulfilled_deletion(committed, tenant=None, **fields):
    """A deletion request (site-scoped when ``tenant`` is given) approved twice and fulfilled."""
    approver = StaffUserFactory(roles=[roles.APPROVER])
    if tenant is not None:
        fields.update(
            concerns=Concerns.SITE, site_client_key=tenant.client_key, verified_site_url=tenant.base_url
        )
    rights_request, _token = approved_request(RequestType.DELETE, approver=approver, **fields)
    services.approve_erasure(rights_request=rights_request, actor=StaffUserFactory(roles=[roles.APPROVER]))
    with committed():
        services.start_fulfilment(rights_request=rights_request, actor=approver)
    done = RightsRequest.objects.get(pk=rights_request.pk)
    assert done.state == S.COMPLETED
    return done


def ledger():
    return set(ErasureLedgerEntry.objects.values_list("kind", "key_hash", "pending"))


def entry(kind, value, pending=False):
    return (kind, erasure_ledger.ledger_hash(kind, value), pending)


def test_a_deletion_request_records_the_account_id_email_and_site_it_erased(committed):
    """Art. 17(1) GDPR: the identifiers a deletion request erased are kept erased (keyed hashes only)."""
    tenant = RegistrationFactory(state="uninstalled")
    earlier = RightsRequestFactory(email="ada@example.org", account_id="557058:other", state=S.COMPLETED)

    done = fulfilled_deletion(
        committed, tenant, email="ada@example.org", account_id="557058:ada", name="Ada Lovelace"
    )

    assert ledger() == {
        entry(Kind.CLIENT_KEY, tenant.client_key),
        entry(Kind.ACCOUNT_ID, "557058:ada"),
        entry(Kind.ACCOUNT_ID, "557058:other"),  # the earlier request's account, erased with it
        entry(Kind.EMAIL_HASH, done.email_hash),
    }
    assert set(ErasureLedgerEntry.objects.values_list("reference", flat=True)) == {done.reference}
    assert not RightsRequest.objects.get(pk=earlier.pk).account_id


def test_a_site_erased_by_a_deletion_request_stays_erased_when_an_older_backup_is_restored(
    committed, backup_dir
):
    """Erasure survives a restore: a backup taken before the erasure does not bring the site back.

    GDPR / UK GDPR Art. 17(1); ICO guidance on the right to erasure (data in backups is put beyond use
    and not restored); CCPA §1798.105 and CCPA regs §7022(d) (archived or backup systems: delete when
    the system is next accessed or used).
    """
    tenant = RegistrationFactory(state="uninstalled")
    other = RegistrationFactory()
    run("backup_registrations")
    (backup,) = backup_dir.glob("*.backup")
    fulfilled_deletion(committed, tenant)
    assert not Registration.objects.filter(client_key=tenant.client_key).exists()
    Registration.objects.all().delete()

    output = run("restore_registrations", str(backup))

    assert "erased again (erasure ledger): 1" in output
    assert list(Registration.objects.values_list("client_key", flat=True)) == [other.client_key]


def test_an_installed_site_erased_by_request_goes_when_the_app_is_uninstalled(committed, client):
    """Art. 17(1)(a) GDPR: kept only while necessary; staff are told what remains and why, and when it
    goes (Art. 12(1), transparency towards the requester is in the receipt)."""
    tenant = RegistrationFactory(state="enabled")
    done = fulfilled_deletion(committed, tenant)
    client.force_login(StaffUserFactory(roles=[roles.REVIEWER]))
    page = reverse("admin:dsr_requests_rightsrequest_change", args=[done.pk])

    html = client.get(page).content.decode()
    assert "Pending since" in html
    assert "Atlassian needs it to authenticate the site" in html
    assert "deleted automatically when the app is uninstalled" in html
    assert Registration.objects.filter(pk=tenant.pk).exists()

    connect_services.apply_event(client_key=tenant.client_key, event="uninstalled", actor="atlassian")

    assert not Registration.objects.filter(pk=tenant.pk).exists()
    html = client.get(page).content.decode()
    assert "Done " in html and "the site&#x27;s installation record is deleted" in html


def test_a_request_that_erased_no_site_shows_no_site_erasure(client):
    rights_request = RightsRequestFactory()
    client.force_login(StaffUserFactory(roles=[roles.REVIEWER]))
    html = client.get(reverse("admin:dsr_requests_rightsrequest_change", args=[rights_request.pk])).content
    assert b"site erasure" in html.lower() and b"Pending since" not in html


def test_a_closed_atlassian_account_is_recorded_in_the_erasure_ledger():
    """Atlassian's personal data reporting: a closed account's data is erased, and stays erased (Art. 17)."""
    RightsRequestFactory(account_id="557058:closed")

    assert services.erase_closed_atlassian_account(account_id="557058:closed") == 1

    assert ledger() == {entry(Kind.ACCOUNT_ID, "557058:closed")}


def test_retention_purge_and_closing_unconfirmed_requests_write_nothing_to_the_ledger(settings):
    """Storage limitation (Art. 5(1)(e)) is not an erasure request: the ledger lists only what data
    subjects asked to erase, so it does not grow into a list of everyone who ever wrote to us."""
    settings.DSR_RETENTION_MONTHS = 24
    RightsRequestFactory(
        state=S.COMPLETED, account_id="557058:old", closed_at=timezone.now() - timedelta(days=800)
    )
    unconfirmed = RightsRequestFactory(received_at=timezone.now() - timedelta(days=30))
    # Closing counts from when the confirmation link went out (created_at), not from receipt.
    RightsRequest.objects.filter(pk=unconfirmed.pk).update(created_at=unconfirmed.received_at)

    assert services.purge().requests == 1
    assert services.close_unverified_requests() == 1

    assert not ErasureLedgerEntry.objects.exists()
