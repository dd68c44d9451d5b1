"""The backup commands: backup_registrations, verify_backups, restore_registrations, prune_backups."""

import datetime as dt
import io
import re

import pytest
import time_machine
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from registrations import backups
from registrations.models import Registration
from registrations.tests.conftest import run
from registrations.tests.factories import RegistrationFactory

UTC = dt.UTC


def refusal(*args):
    with pytest.raises(CommandError) as caught:
        run(*args)
    message = str(caught.value)
    assert "\n" not in message
    return message


def only_backup(folder):
    (path,) = folder.glob("*.backup")
    return path


@pytest.mark.django_db
def test_backup_command_reports_progress_and_the_file_but_no_secret(backup_dir):
    tenants = RegistrationFactory.create_batch(3)

    output = run("backup_registrations", "--batch-size", "1")

    path = only_backup(backup_dir)
    assert "backed up 1 of 3 registrations (30%)" in output
    assert "backed up 3 of 3 registrations (100%)" in output
    assert f"Wrote {path.name} to {backup_dir}: 3 registrations" in output
    for tenant in tenants:
        assert tenant.shared_secret not in output


@pytest.mark.django_db
def test_backup_command_refuses_a_batch_size_below_one(backup_dir):
    assert "--batch-size" in refusal("backup_registrations", "--batch-size", "0")


@pytest.mark.django_db
def test_verify_reports_each_backup_and_fails_if_any_is_damaged(backup_dir):
    RegistrationFactory.create_batch(2)
    with time_machine.travel(dt.datetime(2026, 3, 1, 2, tzinfo=UTC)):
        run("backup_registrations")
    with time_machine.travel(dt.datetime(2026, 3, 2, 2, tzinfo=UTC)):
        run("backup_registrations")
    assert "All 2 backups verified." in run("verify_backups")

    damaged = backup_dir / "registrations-20260302T020000Z.backup"
    data = bytearray(damaged.read_bytes())
    data[-10] ^= 0x01
    damaged.write_bytes(bytes(data))
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 of 2 backups failed verification"):
        call_command("verify_backups", stdout=out)

    assert "OK      registrations-20260301T020000Z.backup: 2 registrations" in out.getvalue()
    assert "FAILED  registrations-20260302T020000Z.backup: corrupted" in out.getvalue()


@pytest.mark.django_db
def test_verify_with_no_backups_fails_naming_the_folder(backup_dir):
    assert str(backup_dir) in refusal("verify_backups")


@pytest.mark.django_db
def test_restore_dry_run_shows_new_updated_unchanged_and_changes_nothing(backup_dir):
    kept, edited, lost = RegistrationFactory.create_batch(3)
    run("backup_registrations")
    Registration.objects.filter(pk=edited.pk).update(description="edited")
    lost.delete()

    output = run("restore_registrations", str(only_backup(backup_dir)), "--dry-run")

    assert f"new: 1 ({lost.client_key})" in output
    assert f"updated: 1 ({edited.client_key})" in output
    assert "unchanged: 1" in output
    assert "Dry run: nothing was changed." in output
    assert Registration.objects.count() == 2
    assert Registration.objects.get(pk=edited.pk).description == "edited"


@pytest.mark.django_db
def test_restore_accepts_a_backup_name_from_the_backup_folder(backup_dir):
    tenant = RegistrationFactory()
    run("backup_registrations")
    tenant.delete()

    output = run("restore_registrations", only_backup(backup_dir).name)

    assert "Restore committed." in output
    assert Registration.objects.filter(client_key=tenant.client_key).exists()


def damage_flip(data):
    data = bytearray(data)
    data[len(data) // 2] ^= 0x40
    return bytes(data)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (damage_flip, "corrupted|wrong key"),
        (lambda data: data[:-7], "truncated"),
        (lambda data: data[: len(backups.HEADER) + 2], "truncated"),
        (lambda data: b"", "empty file"),
        (lambda data: b"PK\x03\x04" + data, "not a registration backup"),
    ],
)
def test_restore_refuses_a_damaged_file_with_one_line_and_changes_nothing(backup_dir, damage, reason):
    RegistrationFactory.create_batch(40)
    run("backup_registrations", "--batch-size", "10")
    path = only_backup(backup_dir)
    path.write_bytes(damage(path.read_bytes()))
    Registration.objects.all().delete()

    message = refusal("restore_registrations", str(path))

    assert message.startswith(f"Refused {path}: ")
    assert re.search(reason, message), message
    assert Registration.objects.count() == 0


@pytest.mark.django_db
def test_restore_refuses_a_backup_made_with_another_key(backup_dir, settings):
    RegistrationFactory()
    run("backup_registrations")
    before = list(Registration.objects.values_list("client_key", "updated_at"))
    settings.BACKUP_KEYS = [Fernet.generate_key().decode()]

    message = refusal("restore_registrations", str(only_backup(backup_dir)))

    assert "cannot be decrypted with any key in BACKUP_KEYS" in message
    assert list(Registration.objects.values_list("client_key", "updated_at")) == before


@pytest.mark.django_db
def test_restore_of_a_missing_file_says_where_it_looked(backup_dir):
    message = refusal("restore_registrations", "/nowhere/registrations-20260101T000000Z.backup")

    assert "no backup at /nowhere/registrations-20260101T000000Z.backup" in message


@pytest.mark.django_db
def test_prune_dry_run_lists_deletions_and_deletes_nothing_then_prune_deletes(backup_dir):
    backup_dir.mkdir()
    start = dt.datetime(2026, 1, 1, 2, tzinfo=UTC)
    names = [backups.backup_name(start + dt.timedelta(days=d)) for d in range(20)]
    for name in names:
        (backup_dir / name).write_bytes(b"")
    (backup_dir / "notes.txt").write_text("kept by hand")
    crashed = f".{names[0]}.k2j4h5.partial"  # what a killed backup leaves behind
    (backup_dir / crashed).write_bytes(b"ARTEMIS")

    with time_machine.travel(start + dt.timedelta(days=19, hours=1)):
        dry = run("prune_backups", "--dry-run")
        assert len(list(backup_dir.iterdir())) == 22
        real = run("prune_backups")

    # Jan 1-20: dailies 14-20, weekly Sundays 4, 11 (and 18), monthly = 20; so 1-3, 5-10, 12, 13 go.
    deleted = [crashed] + [names[d - 1] for d in (1, 2, 3, 5, 6, 7, 8, 9, 10, 12, 13)]
    assert [line.split()[1] for line in dry.splitlines() if line.startswith("delete")] == deleted
    assert "9 kept, 12 would be deleted (dry run: nothing was deleted)" in dry
    assert "ignored notes.txt" in dry
    assert "9 kept, 12 deleted" in real
    assert sorted(p.name for p in backup_dir.iterdir()) == sorted(set(names) - set(deleted) | {"notes.txt"})


@pytest.mark.django_db
def test_prune_of_a_folder_not_yet_created_keeps_and_deletes_nothing(backup_dir):
    assert "0 kept, 0 deleted" in run("prune_backups")


@pytest.mark.django_db
def test_commands_are_silent_on_success_at_verbosity_zero_as_cron_expects(backup_dir):
    RegistrationFactory()

    assert run("backup_registrations", "-v", "0") == ""
    assert run("prune_backups", "-v", "0") == ""
    assert run("verify_backups", "-v", "0") == ""
