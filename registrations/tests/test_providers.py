"""The Connect providers: a tenant record only for a site-scoped subject, never its secret."""

import pytest

from dsr_requests import providers
from registrations.models import ErasureLedgerEntry, Registration
from registrations.tests.factories import RegistrationFactory

pytestmark = pytest.mark.django_db


def site_subject(tenant):
    return providers.Subject(email="a@example.org", email_hash="x", site_client_key=tenant.client_key)


def test_the_tenant_record_is_exported_without_the_secret():
    tenant = RegistrationFactory()
    (record,) = providers.get("connect_registrations").export(site_subject(tenant))
    assert record["client_key"] == tenant.client_key
    assert "shared_secret" not in record and tenant.shared_secret not in repr(record)


def test_a_subject_without_a_verified_site_gets_nothing():
    RegistrationFactory()
    provider = providers.get("connect_registrations")
    assert provider.find(providers.Subject(email="a@example.org", email_hash="x")) == 0


def test_an_uninstalled_sites_record_is_erased_and_an_installed_one_kept():
    gone, live = RegistrationFactory(state="uninstalled"), RegistrationFactory(state="enabled")
    provider = providers.get("connect_registrations")
    assert provider.erase(site_subject(gone)).erased == {"installation records": 1}
    kept = provider.erase(site_subject(live))
    assert kept.erased == {} and "kept while our app is installed" in kept.kept[0]
    assert list(Registration.objects.values_list("pk", flat=True)) == [live.pk]


def test_an_installed_sites_kept_record_is_explained_and_its_erasure_left_pending():
    """Art. 12(4) and 17 GDPR: what an erasure keeps is said, with the reason, and when it goes."""
    live = RegistrationFactory(state="enabled")
    subject = providers.Subject(
        email="a@example.org", email_hash="x", site_client_key=live.client_key, exclude_reference="DSR-SITE01"
    )

    erasure = providers.get("connect_registrations").erase(subject)

    kept = erasure.kept[0]
    assert live.base_url in kept
    assert "Atlassian needs it to authenticate" in kept
    assert "deleted automatically when the app is uninstalled" in kept
    assert "a restore erases your site's record again" in erasure.kept[1]
    entry = ErasureLedgerEntry.objects.get()
    assert (entry.pending, entry.reference) == (True, "DSR-SITE01")


def test_usage_counts_say_they_hold_no_personal_data():
    provider = providers.get("usage_counts")
    assert provider.holds_personal_data is False
    assert list(provider.export(providers.Subject(email="a@example.org", email_hash="x"))) == []
