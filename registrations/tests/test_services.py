"""Services: install, state events, local disable, usage upsert, key rotation."""

import datetime
import threading

import pytest
from django.db import connection

from registrations import services
from registrations.models import Registration, UsageCount
from registrations.payloads import LifecyclePayload
from registrations.tests.factories import RegistrationFactory

pytestmark = pytest.mark.django_db
State = Registration.State


def payload(client_key="ck-1", secret="s" * 40, **fields):
    return LifecyclePayload(
        event="installed",
        client_key=client_key,
        shared_secret=secret,
        base_url="https://acme.atlassian.net/wiki",
        product_type="confluence",
        **fields,
    )


def test_install_creates_then_updates_the_same_row():
    registration, created = services.install(payload=payload(), actor="atlassian")
    assert created and registration.state == State.INSTALLED
    registration, created = services.install(
        payload=payload(secret="t" * 40, server_version="2"), actor="atlassian"
    )
    assert not created
    assert Registration.objects.get().shared_secret == "t" * 40
    assert Registration.objects.get().server_version == "2"


def test_install_after_uninstall_reinstalls_with_a_new_installed_at():
    tenant = RegistrationFactory(
        state=State.UNINSTALLED, installed_at=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    )
    registration, created = services.install(payload=payload(tenant.client_key), actor="atlassian")
    assert not created
    assert registration.state == State.INSTALLED
    assert registration.installed_at.year > 2020


@pytest.mark.parametrize(
    ("start", "event", "outcome", "end"),
    [
        (State.INSTALLED, "enabled", "changed", State.ENABLED),
        (State.DISABLED, "enabled", "changed", State.ENABLED),
        (State.ENABLED, "enabled", "repeat", State.ENABLED),
        (State.UNINSTALLED, "enabled", "ignored", State.UNINSTALLED),
        (State.ENABLED, "disabled", "changed", State.DISABLED),
        (State.DISABLED, "disabled", "repeat", State.DISABLED),
        (State.UNINSTALLED, "disabled", "ignored", State.UNINSTALLED),
        (State.DISABLED, "uninstalled", "changed", State.UNINSTALLED),
        (State.UNINSTALLED, "uninstalled", "repeat", State.UNINSTALLED),
    ],
)
def test_state_events_follow_the_transition_table(start, event, outcome, end):
    tenant = RegistrationFactory(state=start)
    result = services.apply_event(client_key=tenant.client_key, event=event, actor="atlassian")
    assert result.outcome == outcome
    tenant.refresh_from_db()
    assert tenant.state == end


def test_event_for_an_unknown_tenant_changes_nothing():
    assert services.apply_event(client_key="nobody", event="disabled", actor="atlassian").outcome == "unknown"


def test_block_is_logged_with_the_staff_actor(caplog, admin_user):
    tenant = RegistrationFactory()
    with caplog.at_level("INFO", logger="artemis.connect"):
        services.block(registration=tenant, actor=admin_user)
    assert f"actor=staff:{admin_user.pk}" in caplog.text


def test_record_usage_is_one_statement_that_inserts_then_increments(django_assert_num_queries):
    day = datetime.date(2026, 1, 2)
    with django_assert_num_queries(1):
        services.record_usage(module="page", day=day)
    with django_assert_num_queries(1):
        services.record_usage(module="page", day=day)
    services.record_usage(module="other", day=day)
    assert dict(UsageCount.objects.values_list("module", "count")) == {"page": 2, "other": 1}


@pytest.mark.django_db(transaction=True)
def test_record_usage_in_autocommit_is_one_statement_on_either_database(django_assert_num_queries):
    """Outside a transaction PostgreSQL takes the asynchronous-commit variant; still one statement."""
    day = datetime.date(2026, 1, 4)
    for _ in range(3):
        with django_assert_num_queries(1):
            services.record_usage(module="page", day=day)
    assert UsageCount.objects.get(day=day, module="page").count == 3


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_usage_increments_lose_no_count():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for real concurrent connections")
    day = datetime.date(2026, 1, 3)

    def worker():
        try:
            for _ in range(25):
                services.record_usage(module="race", day=day)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert UsageCount.objects.get(day=day, module="race").count == 100


def test_encrypted_fields_are_discovered_through_the_app_registry():
    found = {model._meta.label: [f.name for f in fields] for model, fields in services.encrypted_fields()}
    assert found["registrations.Registration"] == ["shared_secret"]
