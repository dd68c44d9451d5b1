"""Backups include Forge installations, linked again to their site on restore (issue 17, item 4)."""

import datetime as dt

import pytest

from registrations import backups
from registrations.models import ForgeInstallation, Registration
from registrations.tests.factories import RegistrationFactory
from registrations.tests.test_backups import backup_path, backup_settings  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def installation(n, registration=None, **fields):
    values = {
        "installation_id": f"ari:cloud:ecosystem::installation/inst-{n}",
        "app_id": "7d3b1f0e-4c55-4b1e-9a2f-1c0ffee00001",
        "cloud_id": f"cloud-{n}",
        "site_url": f"https://site-{n}.atlassian.net",
        "state": "installed",
        "installed_at": T0,
        "updated_at": T0,
        "last_event_at": T0,
        "registration": registration,
        **fields,
    }
    return ForgeInstallation.objects.create(**values)


def forge_snapshot():
    return {
        row["installation_id"]: row
        for row in ForgeInstallation.objects.values(
            "installation_id", "cloud_id", "site_url", "state", "last_event_at", "registration__client_key"
        )
    }


def test_backup_then_wipe_then_restore_brings_forge_installations_back_linked(backup_settings):  # noqa: F811
    registration = RegistrationFactory(client_key="linked-key")
    installation(1, registration)
    for n in range(2, 6):
        installation(n)
    before = forge_snapshot()
    result = backups.create_backup(actor="test", batch_size=2)
    ForgeInstallation.objects.all().delete()
    Registration.objects.all().delete()
    summary = backups.restore_backup(str(backup_path(backup_settings, result)), actor="test", dry_run=False)
    assert summary.forge_counts == {"new": 5}
    assert summary.manifest["forge_row_count"] == 5
    assert forge_snapshot() == before
    assert ForgeInstallation.objects.get(cloud_id="cloud-1").registration.client_key == "linked-key"


def test_a_newer_lifecycle_event_in_the_database_wins_over_the_backup(backup_settings):  # noqa: F811
    installation(1)
    result = backups.create_backup(actor="test")
    ForgeInstallation.objects.update(state="uninstalled", last_event_at=T0 + dt.timedelta(days=1))
    summary = backups.restore_backup(str(backup_path(backup_settings, result)), actor="test", dry_run=False)
    assert summary.forge_counts == {"newer_in_database": 1}
    assert ForgeInstallation.objects.get().state == "uninstalled"


def test_a_dry_run_changes_no_forge_installation(backup_settings):  # noqa: F811
    installation(1)
    result = backups.create_backup(actor="test")
    ForgeInstallation.objects.all().delete()
    summary = backups.restore_backup(str(backup_path(backup_settings, result)), actor="test", dry_run=True)
    assert summary.forge_counts == {"new": 1}
    assert not ForgeInstallation.objects.exists()


def test_verify_checks_the_forge_rows_against_the_manifest(backup_settings):  # noqa: F811
    installation(1)
    result = backups.create_backup(actor="test")
    (verified,) = backups.verify_backups()
    assert verified.ok and verified.manifest["forge_row_count"] == 1
    path = backup_path(backup_settings, result)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    (broken,) = backups.verify_backups()
    assert not broken.ok
