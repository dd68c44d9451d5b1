"""The erasure ledger: what it holds, how a site's erasure is recorded, and how a restore re-applies it.

Restores use real backup files written by ``backup_registrations`` before the erasure and restored by
``restore_registrations`` after it.
"""

import datetime as dt
import hashlib
import hmac

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from registrations import backups, erasure_ledger, services
from registrations.models import ErasureLedgerEntry, Registration
from registrations.tests.conftest import run
from registrations.tests.factories import RegistrationFactory

pytestmark = pytest.mark.django_db
Kind = ErasureLedgerEntry.Kind
State = Registration.State
UTC = dt.UTC


def take_backup(backup_dir):
    """Write a backup with the real command; returns its path."""
    run("backup_registrations")
    return max(backup_dir.glob("*.backup"))


def restore(path, *flags):
    return run("restore_registrations", str(path), *flags)


def ledger_table_text():
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ErasureLedgerEntry._meta.db_table}")  # noqa: S608 - our own table
        return repr(cursor.fetchall())


# --- what the ledger holds ---------------------------------------------------------------------------


def test_the_ledger_holds_keyed_hashes_of_erased_identifiers_never_the_identifiers(settings):
    """The ledger may hold no personal data: only an HMAC-SHA256 under a key from the settings.

    GDPR Art. 5(1)(c) (data minimisation) and Art. 25 (data protection by design): keeping a list of
    erased identifiers in the clear would keep the very data the erasure removed.
    """
    settings.DSR_BLIND_INDEX_KEY = "k" * 40
    client_key, account_id, email_hash = "site-key-4711", "557058:ada", "e" * 64

    erasure_ledger.record_erasure(
        client_keys=[client_key], account_ids=[account_id], email_hashes=[email_hash], actor="test"
    )

    stored = ledger_table_text()
    for value in (client_key, account_id, email_hash):
        assert value not in stored
    key = hmac.new(b"k" * 40, b"artemis.erasure-ledger", hashlib.sha256).digest()
    expected = {
        (kind, hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest())
        for kind, value in (
            (Kind.CLIENT_KEY, client_key),
            (Kind.ACCOUNT_ID, account_id),
            (Kind.EMAIL_HASH, email_hash),
        )
    }
    assert set(ErasureLedgerEntry.objects.values_list("kind", "key_hash")) == expected


def test_the_same_value_hashes_differently_per_kind_and_per_key(settings):
    settings.DSR_BLIND_INDEX_KEY = "a" * 40
    first = erasure_ledger.ledger_hash(Kind.CLIENT_KEY, "same")
    assert first != erasure_ledger.ledger_hash(Kind.ACCOUNT_ID, "same")
    settings.DSR_BLIND_INDEX_KEY = "b" * 40
    assert first != erasure_ledger.ledger_hash(Kind.CLIENT_KEY, "same")


def test_recording_an_identifier_again_keeps_one_entry_moved_to_the_latest_erasure():
    with time_machine.travel(dt.datetime(2026, 1, 5, tzinfo=UTC), tick=False):
        erasure_ledger.record_erasure(pending_client_keys=["site"], reference="DSR-AAAAAA", actor="test")
    with time_machine.travel(dt.datetime(2026, 2, 5, tzinfo=UTC), tick=False):
        erasure_ledger.record_erasure(client_keys=["site"], reference="DSR-BBBBBB", actor="test")

    entry = ErasureLedgerEntry.objects.get()
    assert (entry.pending, entry.reference, entry.erased_at) == (
        False,
        "DSR-BBBBBB",
        dt.datetime(2026, 2, 5, tzinfo=UTC),
    )


def test_the_database_refuses_a_second_entry_for_the_same_identifier_and_a_pending_account():
    erasure_ledger.record_erasure(account_ids=["557058:x"], actor="test")
    entry = ErasureLedgerEntry.objects.get()
    fields = {"key_id": entry.key_id, "erased_at": timezone.now()}
    with pytest.raises(IntegrityError), transaction.atomic():
        ErasureLedgerEntry.objects.create(kind=Kind.ACCOUNT_ID, key_hash=entry.key_hash, **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        ErasureLedgerEntry.objects.create(kind=Kind.ACCOUNT_ID, key_hash="f" * 64, pending=True, **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        ErasureLedgerEntry.objects.create(kind="name", key_hash="f" * 64, **fields)


# --- erasing a site ----------------------------------------------------------------------------------


def test_an_uninstalled_sites_record_is_deleted_and_recorded_as_erased():
    tenant = RegistrationFactory(state=State.UNINSTALLED)

    outcome, _registration = services.erase_site(
        client_key=tenant.client_key, reference="DSR-X", actor="test"
    )

    assert outcome == services.SiteErasure.DELETED
    assert not Registration.objects.exists()
    entry = ErasureLedgerEntry.objects.get()
    assert (entry.kind, entry.pending, entry.reference) == (Kind.CLIENT_KEY, False, "DSR-X")
    assert entry.key_hash == erasure_ledger.ledger_hash(Kind.CLIENT_KEY, tenant.client_key)


def test_an_installed_sites_record_is_kept_and_its_erasure_recorded_as_pending():
    tenant = RegistrationFactory(state=State.ENABLED)

    outcome, registration = services.erase_site(client_key=tenant.client_key, actor="test")

    assert outcome == services.SiteErasure.PENDING and registration.pk == tenant.pk
    assert Registration.objects.filter(pk=tenant.pk).exists()
    assert ErasureLedgerEntry.objects.get().pending is True


def test_a_site_whose_record_is_already_gone_is_still_recorded_because_backups_may_hold_it():
    """Art. 17(1) GDPR: the erasure must also reach copies; a backup may hold a record deleted earlier."""
    outcome, registration = services.erase_site(client_key="gone-already", actor="test")

    assert (outcome, registration) == (services.SiteErasure.ABSENT, None)
    assert ErasureLedgerEntry.objects.get().pending is False


# --- restore re-applies the ledger -------------------------------------------------------------------


def test_a_site_erased_after_a_backup_is_erased_again_when_that_backup_is_restored(backup_dir):
    """Erasure must survive a restore: records erased since the backup are erased again as it loads.

    GDPR / UK GDPR Art. 17(1); ICO guidance on the right to erasure ("erasure from backup systems": put
    the data beyond use and do not restore it); CCPA §1798.105 and CCPA regs §7022(d) (deletion in
    archived or backup systems takes effect when the system is next accessed or used).
    """
    erased = RegistrationFactory(state=State.UNINSTALLED)
    kept = RegistrationFactory()
    path = take_backup(backup_dir)
    services.erase_site(client_key=erased.client_key, actor="test")
    Registration.objects.all().delete()  # the disaster the backup is for

    output = restore(path)

    assert "new: 1" in output
    assert "erased again (erasure ledger): 1" in output
    assert erased.client_key not in output  # an erased site is counted, never named
    assert list(Registration.objects.values_list("client_key", flat=True)) == [kept.client_key]


def test_restore_dry_run_says_how_many_it_would_erase_again_and_changes_nothing(backup_dir):
    """Art. 17(1) GDPR; CCPA regs §7022(d): the operator sees before a restore what it will erase again."""
    erased = RegistrationFactory(state=State.UNINSTALLED)
    RegistrationFactory()
    path = take_backup(backup_dir)
    services.erase_site(client_key=erased.client_key, actor="test")
    Registration.objects.all().delete()

    output = restore(path, "--dry-run")

    assert "would erase again (erasure ledger): 1" in output
    assert "new: 1" in output
    assert "Dry run: nothing was changed." in output
    assert not Registration.objects.exists()


def test_a_record_the_ledger_names_is_deleted_even_when_the_database_still_had_it(backup_dir):
    """Art. 17(1) GDPR: whatever brought an erased record back, the restore that touches it erases it."""
    tenant = RegistrationFactory(state=State.UNINSTALLED)
    path = take_backup(backup_dir)
    erasure_ledger.record_erasure(client_keys=[tenant.client_key], actor="test")  # the row is still here

    output = restore(path)

    assert "erased again (erasure ledger): 1" in output
    assert not Registration.objects.exists()


def test_a_site_installed_again_after_its_erasure_is_restored_and_kept(backup_dir):
    """Art. 17 covers the data erased, not a later install: a site that installed the app again since
    its erasure is served again, and a restore keeps its new record (Art. 6(1)(b) GDPR: the contract)."""
    with time_machine.travel(dt.datetime(2026, 3, 1, tzinfo=UTC)):
        erasure_ledger.record_erasure(client_keys=["site-back"], actor="test")
    with time_machine.travel(dt.datetime(2026, 3, 2, tzinfo=UTC)):
        RegistrationFactory(client_key="site-back")
        path = take_backup(backup_dir)
    Registration.objects.all().delete()

    output = restore(path)

    assert "erased again (erasure ledger): 0" in output
    assert "kept, installed again after their erasure (erasure ledger): 1" in output
    assert Registration.objects.filter(client_key="site-back").exists()


def test_a_pending_sites_record_is_restored_while_installed_and_erased_again_when_uninstalled(backup_dir):
    """Art. 17(1)(a) GDPR: a site's record is necessary while the app is installed there (Atlassian needs it
    to authenticate the site) and no longer once uninstalled; a restored uninstalled copy is erased."""
    installed = RegistrationFactory(state=State.ENABLED)
    uninstalled = RegistrationFactory(state=State.UNINSTALLED)
    path = take_backup(backup_dir)
    erasure_ledger.record_erasure(
        pending_client_keys=[installed.client_key, uninstalled.client_key], actor="t"
    )
    Registration.objects.all().delete()

    output = restore(path)

    assert "erased again (erasure ledger): 1" in output
    assert "kept until the app is uninstalled (erasure pending): 1" in output
    assert list(Registration.objects.values_list("client_key", flat=True)) == [installed.client_key]
    pending = dict(ErasureLedgerEntry.objects.values_list("key_hash", "pending"))
    assert pending == {
        erasure_ledger.ledger_hash(Kind.CLIENT_KEY, installed.client_key): True,
        erasure_ledger.ledger_hash(Kind.CLIENT_KEY, uninstalled.client_key): False,
    }


def test_a_restore_that_fails_leaves_the_ledger_as_it_was(backup_dir, monkeypatch):
    tenant = RegistrationFactory(state=State.UNINSTALLED)
    path = take_backup(backup_dir)
    erasure_ledger.record_erasure(pending_client_keys=[tenant.client_key], actor="test")

    def fail(*args, **kwargs):
        from django.db import DatabaseError

        raise DatabaseError("disk full")

    monkeypatch.setattr(Registration.objects, "bulk_create", fail)
    Registration.objects.all().delete()
    with pytest.raises(backups.BackupError, match="nothing was changed"):
        backups.restore_backup(str(path), actor="test", dry_run=False)

    assert ErasureLedgerEntry.objects.get().pending is True


def test_restore_warns_when_ledger_entries_were_hashed_under_another_key(backup_dir, settings):
    settings.DSR_BLIND_INDEX_KEY = "old" * 12
    erasure_ledger.record_erasure(client_keys=["erased-site"], actor="test")
    RegistrationFactory()
    path = take_backup(backup_dir)
    settings.DSR_BLIND_INDEX_KEY = "new" * 12

    output = restore(path)

    assert "1 erasure ledger entries were hashed under another DSR_BLIND_INDEX_KEY" in output


def test_registration_backups_hold_no_account_id_or_email_so_a_restore_has_none_to_blank():
    """Art. 17(1) GDPR: only client keys can come back from a registration backup; the ledger's account
    IDs and email blind-index values have nothing to match there (a tenant record names no person)."""
    names = {field.name for field in backups.backup_fields()}
    assert not {name for name in names if "account" in name or "email" in name or name == "sub"}


# --- the whole-registry command ----------------------------------------------------------------------


def test_reapply_command_erases_every_registration_the_ledger_names_and_its_dry_run_changes_nothing():
    """Art. 17(1) GDPR: after the registry table was restored by other means, the ledger still applies."""
    erased, kept = RegistrationFactory(state=State.DISABLED), RegistrationFactory()
    erasure_ledger.record_erasure(client_keys=[erased.client_key], actor="test")

    assert "would erase again (erasure ledger): 1" in run("reapply_erasure_ledger", "--dry-run")
    assert Registration.objects.count() == 2
    assert "erased again (erasure ledger): 1" in run("reapply_erasure_ledger")
    assert list(Registration.objects.values_list("pk", flat=True)) == [kept.pk]


def test_reapply_works_through_the_registry_in_batches():
    tenants = RegistrationFactory.create_batch(5, state=State.UNINSTALLED)
    erasure_ledger.record_erasure(client_keys=[t.client_key for t in tenants[::2]], actor="test")

    result = erasure_ledger.reapply_erasure_ledger(actor="test", batch_size=2)

    assert result.erased_again == 3
    assert Registration.objects.count() == 2


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_an_erasure_and_an_uninstall_at_the_same_moment_never_leave_the_record_behind():
    """Art. 17(1)(a) GDPR: whichever comes first, the record of a site that uninstalled the app goes."""
    import threading

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for real concurrent connections")
    for _round in range(8):
        tenant = RegistrationFactory(state=State.ENABLED)
        barrier = threading.Barrier(2)

        def erase(client_key=tenant.client_key, barrier=barrier):
            try:
                barrier.wait()
                services.erase_site(client_key=client_key, actor="test")
            finally:
                connection.close()

        def uninstall(client_key=tenant.client_key, barrier=barrier):
            try:
                barrier.wait()
                services.apply_event(client_key=client_key, event="uninstalled", actor="atlassian")
            finally:
                connection.close()

        threads = [threading.Thread(target=erase), threading.Thread(target=uninstall)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not Registration.objects.filter(client_key=tenant.client_key).exists()
        assert not ErasureLedgerEntry.objects.filter(pending=True).exists()
