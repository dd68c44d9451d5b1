"""Admin: read-only registry without secrets, local disable, usage chart."""

import datetime

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from registrations import erasure_ledger, services
from registrations.models import ErasureLedgerEntry, UsageCount
from registrations.tests.conftest import request_token
from registrations.tests.factories import RegistrationFactory

pytestmark = pytest.mark.django_db
LIST = "/admin/registrations/registration/"


@pytest.fixture
def staff_client(client):
    user = User.objects.create_user("support", password="x" * 16, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_registration", "view_usagecount"])
    )
    client.force_login(user)
    client.user = user
    return client


def test_registration_list_shows_tenants_but_never_a_secret(admin_client):
    tenant = RegistrationFactory(base_url="https://acme.atlassian.net/wiki")
    html = admin_client.get(LIST).content.decode()
    assert tenant.client_key in html and "https://acme.atlassian.net/wiki" in html
    assert tenant.shared_secret not in html
    detail = admin_client.get(f"{LIST}{tenant.pk}/change/").content.decode()
    assert tenant.client_key in detail
    assert tenant.shared_secret not in detail
    assert "shared_secret" not in detail and "shared secret" not in detail.lower()


def test_registrations_are_searchable_by_client_key_and_site_and_filterable(admin_client):
    RegistrationFactory(client_key="alpha-key", base_url="https://alpha.atlassian.net/wiki")
    RegistrationFactory(client_key="beta-key", base_url="https://beta.atlassian.net/wiki", state="disabled")
    assert "beta-key" not in admin_client.get(LIST, {"q": "alpha-key"}).content.decode()
    assert "alpha-key" in admin_client.get(LIST, {"q": "alpha.atlassian"}).content.decode()
    html = admin_client.get(LIST, {"state__exact": "disabled"}).content.decode()
    assert "beta-key" in html and "alpha-key" not in html
    assert admin_client.get(LIST, {"product_type__exact": "confluence"}).status_code == 200


def test_registration_admin_is_read_only(admin_client):
    tenant = RegistrationFactory()
    assert admin_client.get(f"{LIST}add/").status_code == 403
    assert admin_client.get(f"{LIST}{tenant.pk}/delete/").status_code == 403
    response = admin_client.post(f"{LIST}{tenant.pk}/change/", {"client_key": "changed"})
    assert response.status_code == 403
    tenant.refresh_from_db()
    assert tenant.client_key != "changed"


def _page(client, tenant):
    return client.get(
        "/connect/identity-proof/", HTTP_AUTHORIZATION=f"JWT {request_token(tenant)}"
    ).status_code


def test_block_action_refuses_the_tenants_requests_and_survives_atlassians_enabled(admin_client, client):
    tenant = RegistrationFactory()
    other = RegistrationFactory()
    response = admin_client.post(LIST, {"action": "block", "_selected_action": [tenant.pk]}, follow=True)
    assert "1 tenant blocked." in response.content.decode()
    tenant.refresh_from_db()
    other.refresh_from_db()
    assert tenant.blocked_at is not None and other.blocked_at is None
    # Atlassian toggles the app off and on again: the block stays.
    services.apply_event(client_key=tenant.client_key, event="disabled", actor="atlassian")
    services.apply_event(client_key=tenant.client_key, event="enabled", actor="atlassian")
    assert _page(client, tenant) == 401
    admin_client.post(LIST, {"action": "unblock", "_selected_action": [tenant.pk]})
    assert _page(client, tenant) == 200


def test_view_only_staff_cannot_block_a_tenant(staff_client):
    tenant = RegistrationFactory()
    assert staff_client.get(LIST).status_code == 200
    staff_client.post(LIST, {"action": "block", "_selected_action": [tenant.pk]})
    tenant.refresh_from_db()
    assert tenant.blocked_at is None


def test_usage_list_shows_a_30_day_chart_and_module_totals(admin_client):
    today = timezone.localdate()
    UsageCount.objects.create(day=today, module="identity-proof", count=7)
    UsageCount.objects.create(day=today - datetime.timedelta(days=3), module="identity-proof", count=3)
    UsageCount.objects.create(day=today - datetime.timedelta(days=40), module="old", count=99)
    html = admin_client.get("/admin/registrations/usagecount/").content.decode()
    assert html.count("<rect ") == 30
    assert "Highest day: 7 uses." in html
    assert "<td>identity-proof</td><td>10</td>" in html
    assert "<td>old</td>" not in html


def test_usage_list_without_data_says_so(admin_client):
    html = admin_client.get("/admin/registrations/usagecount/").content.decode()
    assert "No app uses in the last 30 days." in html


def test_the_privacy_admin_role_runs_the_registry_and_its_reports(client):
    from django.contrib.auth.models import Group

    from dsr_requests import roles
    from dsr_requests.tests.factories import StaffUserFactory

    user = StaffUserFactory(roles=[roles.PRIVACY_ADMIN])
    assert set(
        Group.objects.get(name=roles.PRIVACY_ADMIN).permissions.values_list("codename", flat=True)
    ) >= {
        "view_registration",
        "change_registration",
        "view_usagecount",
        "view_personaldatareport",
        "view_erasureledgerentry",
        "view_accessevent",
    }
    client.force_login(user)
    tenant = RegistrationFactory()
    assert client.get(LIST).status_code == 200
    client.post(LIST, {"action": "block", "_selected_action": [tenant.pk]})
    tenant.refresh_from_db()
    assert tenant.blocked_at is not None


LEDGER = "/admin/registrations/erasureledgerentry/"


def test_erasure_ledger_list_is_read_only_and_shows_no_hash_or_identifier(admin_client):
    """GDPR Art. 5(1)(c): staff see what was erased and when, not the keyed hash or the identifier."""
    erasure_ledger.record_erasure(pending_client_keys=["site-secretive"], reference="DSR-LEDG01", actor="t")
    entry = ErasureLedgerEntry.objects.get()

    html = admin_client.get(LEDGER).content.decode()

    assert "DSR-LEDG01" in html and "site (client key)" in html
    assert entry.key_hash not in html and "site-secretive" not in html
    detail = admin_client.get(f"{LEDGER}{entry.pk}/change/").content.decode()
    assert entry.key_hash not in detail and "keyed hash" not in detail
    assert admin_client.get(f"{LEDGER}add/").status_code == 403
    assert admin_client.post(f"{LEDGER}{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert ErasureLedgerEntry.objects.count() == 1
