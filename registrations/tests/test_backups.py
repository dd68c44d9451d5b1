"""Backups of registrations: the file format, streaming, restore semantics and the retention rule."""

import datetime as dt
import gc
import io
import tracemalloc

import pytest
from cryptography.fernet import Fernet
from django.core.files.storage import FileSystemStorage, InMemoryStorage
from django.core.management import CommandError, call_command
from hypothesis import given
from hypothesis import strategies as st

from registrations import backups, tenant_cache
from registrations.models import Registration
from registrations.tests.conftest import request_token
from registrations.tests.factories import RegistrationFactory

UTC = dt.UTC
FIELDS = [f.name for f in backups.backup_fields()]
PAGE = "/connect/identity-proof/"


def new_key():
    """A fresh backup key, made at run time (no key is committed)."""
    return Fernet.generate_key().decode()


@pytest.fixture
def backup_settings(settings, tmp_path):
    """Backups in a private temporary folder, under a fresh key."""
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.BACKUP_STORAGE = ""
    settings.BACKUP_KEYS = [new_key()]
    return settings


def backup_path(settings, result_or_name):
    """Where a backup (a BackupResult, or a name) lies in the local backup folder."""
    return settings.BACKUP_DIR / getattr(result_or_name, "name", result_or_name)


def snapshot():
    """Every registration as a dict of its backed-up fields, keyed by client key (ids are not kept)."""
    return {row["client_key"]: row for row in Registration.objects.values(*FIELDS)}


def archive(batches, *, key, created_at=None):
    """Bytes of a backup holding ``batches`` of row dicts, written by the real writer."""
    out = io.BytesIO()
    backups.write_archive(
        out,
        batches,
        fernet=backups.fernet_for([key]),
        created_at=created_at or dt.datetime(2026, 1, 1, tzinfo=UTC),
        fields=FIELDS,
    )
    return out.getvalue()


def sample_rows(count, start=0):
    now = dt.datetime(2026, 1, 1, 12, tzinfo=UTC)
    return [
        {
            **{name: "" for name in FIELDS},
            "client_key": f"client-{n}",
            "shared_secret": f"secret-{n}-" + "s" * 30,
            "base_url": f"https://site{n}.atlassian.net/wiki",
            "product_type": "confluence",
            "state": "enabled",
            "installed_at": now,
            "updated_at": now,
            "enabled_at": now,
            "disabled_at": None,
            "uninstalled_at": None,
        }
        for n in range(start, start + count)
    ]


# --- Backup and restore ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_backup_then_wipe_then_restore_brings_every_tenant_back_with_its_secret(backup_settings):
    RegistrationFactory.create_batch(5)
    RegistrationFactory(
        state=Registration.State.UNINSTALLED, uninstalled_at=dt.datetime(2026, 2, 1, tzinfo=UTC)
    )
    before = snapshot()

    result = backups.create_backup(actor="test", batch_size=2)
    Registration.objects.all().delete()
    summary = backups.restore_backup(str(backup_path(backup_settings, result)), actor="test", dry_run=False)

    assert result.row_count == 6
    assert summary.counts == {"new": 6, "updated": 0, "unchanged": 0, "newer_in_database": 0}
    assert snapshot() == before


@pytest.mark.django_db
def test_after_backup_wipe_and_restore_the_tenants_jwt_authenticates_again(
    backup_settings, client, django_capture_on_commit_callbacks
):
    """A token signed (PyJWT, HS256) with the secret from before the loss opens the JWT-protected page."""
    tenant = RegistrationFactory()
    token = {"HTTP_AUTHORIZATION": f"JWT {request_token(tenant, url=PAGE)}"}
    assert client.get(PAGE, **token).status_code == 200
    result = backups.create_backup(actor="test")

    Registration.objects.all().delete()
    tenant_cache.forget(tenant.client_key)
    assert client.get(PAGE, **token).status_code == 401  # and "unknown tenant" is now cached
    with django_capture_on_commit_callbacks(execute=True):
        backups.restore_backup(str(backup_path(backup_settings, result)), actor="test", dry_run=False)

    response = client.get(PAGE, **token)
    assert response.status_code == 200
    assert tenant.base_url in response.content.decode()


@pytest.mark.django_db
def test_backup_bytes_hold_no_plain_secret_client_key_or_site(backup_settings):
    tenants = RegistrationFactory.create_batch(3)

    data = backup_path(backup_settings, backups.create_backup(actor="test")).read_bytes()

    for tenant in tenants:
        for value in (tenant.shared_secret, tenant.client_key, tenant.base_url):
            assert value.encode() not in data
    assert b"confluence" not in data.lower()
    assert data.startswith(backups.HEADER)


@pytest.mark.django_db
def test_backup_of_an_empty_database_is_valid_and_restores_nothing(backup_settings):
    result = backups.create_backup(actor="test")

    summary = backups.restore_backup(str(backup_path(backup_settings, result)), actor="test", dry_run=False)

    assert result.row_count == 0
    assert summary.manifest["row_count"] == 0
    assert summary.counts == dict.fromkeys(backups.RestoreSummary.OUTCOMES, 0)
    assert Registration.objects.count() == 0


@pytest.mark.django_db
def test_restore_sorts_tenants_into_new_updated_unchanged_and_newer_in_database(backup_settings):
    kept, edited, reinstalled, lost = RegistrationFactory.create_batch(4)
    result = backups.create_backup(actor="test")
    Registration.objects.filter(pk=edited.pk).update(description="changed by hand")
    Registration.objects.filter(pk=reinstalled.pk).update(
        shared_secret="a-new-secret-from-a-signed-reinstall",
        updated_at=reinstalled.updated_at + dt.timedelta(1),
    )
    lost.delete()
    later = RegistrationFactory()  # installed after the backup: not in it, left alone

    dry = backups.restore_backup(str(backup_path(backup_settings, result)), actor="test", dry_run=True)
    assert Registration.objects.get(pk=edited.pk).description == "changed by hand"
    assert not Registration.objects.filter(client_key=lost.client_key).exists()

    summary = backups.restore_backup(str(backup_path(backup_settings, result)), actor="test", dry_run=False)

    expected = {"new": [lost.client_key], "updated": [edited.client_key], "unchanged": [kept.client_key]}
    expected["newer_in_database"] = [reinstalled.client_key]
    assert dry.examples == summary.examples == expected
    assert Registration.objects.get(pk=edited.pk).description == edited.description
    assert Registration.objects.get(pk=reinstalled.pk).shared_secret == "a-new-secret-from-a-signed-reinstall"
    assert Registration.objects.filter(client_key=lost.client_key).exists()
    assert Registration.objects.filter(pk=later.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_restore_that_fails_on_a_later_batch_changes_nothing(backup_settings, tmp_path):
    bad = sample_rows(1, start=99)
    bad[0]["state"] = "exploded"  # refused by the state check constraint, after the first batch went in
    path = tmp_path / "bad.backup"
    path.write_bytes(archive([sample_rows(3), bad], key=backup_settings.BACKUP_KEYS[0]))

    with pytest.raises(backups.BackupError, match="nothing was changed"):
        backups.restore_backup(str(path), actor="test", dry_run=False)

    assert Registration.objects.count() == 0


@pytest.mark.django_db
def test_backup_goes_to_a_configured_storage_alias_and_restores_from_it_by_name(backup_settings):
    backup_settings.STORAGES = {
        **backup_settings.STORAGES,
        "backups": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    backup_settings.BACKUP_STORAGE = "backups"
    tenant = RegistrationFactory()

    result = backups.create_backup(actor="test")
    tenant.delete()
    summary = backups.restore_backup(result.name, actor="test", dry_run=False)

    assert isinstance(backups.backup_storage(), InMemoryStorage)
    assert result.location == "django.core.files.storage.memory.InMemoryStorage"
    assert summary.counts["new"] == 1
    assert not backup_settings.BACKUP_DIR.exists()


def test_storage_class_path_is_built_with_the_configured_options(backup_settings, tmp_path):
    backup_settings.BACKUP_STORAGE = "django.core.files.storage.FileSystemStorage"
    backup_settings.BACKUP_STORAGE_OPTIONS = {"location": str(tmp_path / "elsewhere")}

    storage = backups.backup_storage()

    assert isinstance(storage, FileSystemStorage)
    assert storage.location == str(tmp_path / "elsewhere")


def test_storage_that_cannot_be_imported_is_a_one_line_error(backup_settings):
    backup_settings.BACKUP_STORAGE = "storages.backends.nowhere.Storage"

    with pytest.raises(backups.BackupError, match="BACKUP_STORAGE"):
        backups.backup_storage()


@pytest.mark.django_db
def test_a_backup_that_dies_midway_leaves_no_file_behind(backup_settings):
    RegistrationFactory.create_batch(3)

    def crash(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        backups.create_backup(actor="test", batch_size=1, progress=crash)

    assert list(backup_settings.BACKUP_DIR.iterdir()) == []


@pytest.mark.django_db
def test_rotated_keys_still_read_old_backups_and_new_backups_use_the_first_key(backup_settings):
    retired, current = backup_settings.BACKUP_KEYS[0], new_key()
    RegistrationFactory()
    old = backup_path(
        backup_settings, backups.create_backup(actor="test", now=dt.datetime(2026, 3, 1, tzinfo=UTC))
    )

    backup_settings.BACKUP_KEYS = [current, retired]
    new = backup_path(
        backup_settings, backups.create_backup(actor="test", now=dt.datetime(2026, 3, 2, tzinfo=UTC))
    )

    assert [r.ok for r in backups.verify_backups()] == [True, True]
    only_current = backups.fernet_for([current])
    assert backups.read_manifest(io.BytesIO(new.read_bytes()), fernet=only_current)["row_count"] == 1
    with pytest.raises(backups.BackupError, match="BACKUP_KEYS"):
        backups.read_manifest(io.BytesIO(old.read_bytes()), fernet=only_current)


@pytest.mark.django_db
def test_two_backups_in_the_same_second_are_refused_rather_than_overwritten(backup_settings):
    moment = dt.datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    backups.create_backup(actor="test", now=moment)

    with pytest.raises(backups.BackupError, match="exists already"):
        backups.create_backup(actor="test", now=moment)


@pytest.mark.django_db
def test_backup_and_restore_make_a_bounded_number_of_queries(backup_settings, django_assert_max_num_queries):
    Registration.objects.bulk_create(RegistrationFactory.build_batch(250))

    with django_assert_max_num_queries(4):
        result = backups.create_backup(actor="test", batch_size=50)
    Registration.objects.all().delete()
    # Per batch: one lookup, one erasure-ledger lookup and one insert.
    with django_assert_max_num_queries(5 * 3 + 4):
        backups.restore_backup(str(backup_path(backup_settings, result)), actor="test", dry_run=False)

    assert Registration.objects.count() == 250


def peak_memory(function):
    gc.collect()
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.django_db
def test_backup_and_restore_memory_does_not_grow_with_the_tenant_count(backup_settings):
    """Peak memory for 10N tenants stays close to that for N: one batch is held at a time, not the table.

    Holding the rows would multiply the peak by four or more (2,000 rows held at once take about 3 MB,
    against a peak under 1 MB for 200). The margin allows for what does grow a little: Django's cyclic garbage
    (query compilers), freed by the collector in its own time, and a restore's list of changed client
    keys, kept until the commit to clear the tenant cache.
    """
    small, large = 200, 2000
    peaks = {}
    for count in (small, large):
        Registration.objects.all().delete()
        Registration.objects.bulk_create(RegistrationFactory.build_batch(count))
        moment = dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=count)
        path = backup_path(backup_settings, backups.backup_name(moment))
        peaks[("backup", count)] = peak_memory(
            lambda m=moment: backups.create_backup(actor="test", now=m, batch_size=100)
        )
        Registration.objects.all().delete()
        peaks[("restore", count)] = peak_memory(
            lambda p=path: backups.restore_backup(str(p), actor="test", dry_run=False)
        )
        assert Registration.objects.count() == count

    for phase in ("backup", "restore"):
        assert peaks[(phase, large)] < 3 * peaks[(phase, small)], peaks


# --- The file format ----------------------------------------------------------------------------------


def test_archive_round_trips_rows_and_manifest():
    key = new_key()
    data = archive([sample_rows(2), sample_rows(1, start=2)], key=key)

    reader = backups.BackupReader(io.BytesIO(data), fernet=backups.fernet_for([key]))
    rows = [row for batch in reader.batches() for row in batch]

    assert [row["client_key"] for row in rows] == ["client-0", "client-1", "client-2"]
    assert reader.manifest["row_count"] == 3
    assert reader.manifest["schema_version"] == backups.SCHEMA_VERSION
    assert reader.manifest["created_at"] == "2026-01-01T00:00:00+00:00"


def test_every_single_flipped_byte_is_refused():
    key = new_key()
    data = archive([sample_rows(2), sample_rows(2, start=2)], key=key)
    fernet = backups.fernet_for([key])

    for position in range(len(data)):
        for bit in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[position] ^= bit
            with pytest.raises(backups.BackupError):
                backups.read_manifest(io.BytesIO(bytes(damaged)), fernet=fernet)


def test_every_truncation_is_refused_as_truncated_or_empty():
    key = new_key()
    data = archive([sample_rows(2), sample_rows(2, start=2)], key=key)
    fernet = backups.fernet_for([key])

    for length in range(len(data)):
        with pytest.raises(backups.BackupError, match="truncated|empty|header"):
            backups.read_manifest(io.BytesIO(data[:length]), fernet=fernet)


def test_wrong_key_is_named_as_the_likely_cause():
    data = archive([sample_rows(1)], key=new_key())

    with pytest.raises(backups.BackupError, match="wrong key"):
        backups.read_manifest(io.BytesIO(data), fernet=backups.fernet_for([new_key()]))


def test_bytes_after_the_manifest_are_refused():
    key = new_key()
    data = archive([sample_rows(1)], key=key) + b"\0"

    with pytest.raises(backups.BackupError, match="after the manifest"):
        backups.read_manifest(io.BytesIO(data), fernet=backups.fernet_for([key]))


def test_a_data_frame_dropped_from_the_middle_is_caught_by_the_checksum():
    key = new_key()
    fernet = backups.fernet_for([key])
    data = archive([sample_rows(1), sample_rows(1, start=1)], key=key)
    first_length = backups.LENGTH.unpack_from(data, len(backups.HEADER))[0]
    first_end = len(backups.HEADER) + backups.LENGTH.size + first_length
    second_length = backups.LENGTH.unpack_from(data, first_end)[0]
    without_second = data[:first_end] + data[first_end + backups.LENGTH.size + second_length :]

    with pytest.raises(backups.BackupError, match="manifest says 2 rows"):
        backups.read_manifest(io.BytesIO(without_second), fernet=fernet)


SHARED_KEY = new_key()


@given(st.binary(max_size=400))
def test_reader_answers_any_bytes_with_a_backup_error_only(data):
    with pytest.raises(backups.BackupError):
        backups.read_manifest(io.BytesIO(backups.HEADER + data), fernet=backups.fernet_for([SHARED_KEY]))


# --- Names and retention -----------------------------------------------------------------------------------


def test_backup_names_carry_the_utc_time_and_read_back():
    taken = dt.datetime(2026, 11, 28, 3, 4, 5, 999, tzinfo=dt.timezone(dt.timedelta(hours=1)))

    name = backups.backup_name(taken)

    assert name == "registrations-20261128T020405Z.backup"
    assert backups.parse_backup_name(name) == taken.replace(microsecond=0)


@pytest.mark.parametrize(
    "name",
    [
        "registrations-20261328T020405Z.backup",
        "registrations-20261128T020405Z.backup\n",
        "registrations-20261128T020405Z.backup.gz",
        "notes.txt",
        "registrations-٢٠٢٦١١٢٨T020405Z.backup",
    ],
)
def test_other_names_are_not_backups(name):
    assert backups.parse_backup_name(name) is None


def name_at(moment):
    return backups.backup_name(moment)


def test_retention_over_400_simulated_days_keeps_exactly_the_expected_set():
    """Daily backups at 02:00 (and a second one at 14:00 on the 1st and 15th), pruned after each."""
    start = dt.datetime(2025, 1, 1, 2, 0, tzinfo=UTC)
    stored = set()
    for day in range(400):
        moments = [start + dt.timedelta(days=day)]
        if moments[0].day in (1, 15):
            moments.append(moments[0] + dt.timedelta(hours=12))
        for moment in moments:
            stored.add(name_at(moment))
            plan = backups.plan_retention(stored, now=moment + dt.timedelta(minutes=5))
            stored -= set(plan.delete)
            assert len(stored) <= backups.KEEP_DAILY + backups.KEEP_WEEKLY + backups.KEEP_MONTHLY

    # Day 399 is Wednesday 2026-02-04 (ISO week 2026-W06).
    expected_days = {
        # daily: the last 7 days
        "2026-01-29",
        "2026-01-30",
        "2026-01-31",
        "2026-02-01",
        "2026-02-02",
        "2026-02-03",
        "2026-02-04",
        # weekly: the Sunday closing each of the 7 earlier ISO weeks (W06's newest is today)
        "2026-01-25",
        "2026-01-18",
        "2026-01-11",
        "2026-01-04",
        "2025-12-28",
        "2025-12-21",
        # monthly: the last day of each of the 11 earlier months (February's newest is today)
        "2025-12-31",
        "2025-11-30",
        "2025-10-31",
        "2025-09-30",
        "2025-08-31",
        "2025-07-31",
        "2025-06-30",
        "2025-05-31",
        "2025-04-30",
        "2025-03-31",
    }
    expected = {name_at(dt.datetime.fromisoformat(day).replace(hour=2, tzinfo=UTC)) for day in expected_days}
    expected.add(name_at(dt.datetime(2026, 2, 1, 14, tzinfo=UTC)))  # newest of the 1st is the 14:00 one
    expected.discard(name_at(dt.datetime(2026, 2, 1, 2, tzinfo=UTC)))
    assert stored == expected


def test_retention_explains_why_each_backup_is_kept():
    now = dt.datetime(2026, 2, 4, 3, tzinfo=UTC)
    names = [name_at(now - dt.timedelta(days=d)) for d in (0, 4, 5)]

    plan = backups.plan_retention(names, now=now)

    assert plan.keep[names[0]] == ["daily 2026-02-04", "weekly 2026-W06", "monthly 2026-02"]
    assert plan.keep[names[1]] == ["daily 2026-01-31", "weekly 2026-W05", "monthly 2026-01"]
    assert plan.keep[names[2]] == ["daily 2026-01-30"]  # a day older than W05's and January's newest


def test_retention_deletes_stale_partials_keeps_future_backups_and_ignores_other_files():
    now = dt.datetime(2026, 2, 4, 3, tzinfo=UTC)
    future = name_at(now + dt.timedelta(hours=2))
    stale = "." + name_at(now - dt.timedelta(days=2)) + ".a1b2c3.partial"
    fresh = "." + name_at(now - dt.timedelta(minutes=1)) + ".d4e5f6.partial"

    plan = backups.plan_retention([future, stale, fresh, "README.txt"], now=now)

    assert list(plan.keep) == [future]
    assert plan.delete == [stale]
    assert plan.ignored == sorted([fresh, "README.txt"])


def test_retention_never_keeps_anything_older_than_twelve_months():
    now = dt.datetime(2026, 2, 4, 3, tzinfo=UTC)
    old = name_at(dt.datetime(2025, 2, 28, 2, tzinfo=UTC))

    assert backups.plan_retention([old], now=now).delete == [old]


moments = st.datetimes(
    min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2027, 1, 1), timezones=st.just(UTC)
).map(lambda m: m.replace(microsecond=0))


@given(st.sets(moments, max_size=60), moments)
def test_retention_is_stable_bounded_and_keeps_the_newest_backup(taken, now):
    names = {name_at(m) for m in taken}

    plan = backups.plan_retention(names, now=now)
    again = backups.plan_retention(set(plan.keep), now=now)

    assert set(plan.keep) | set(plan.delete) == names
    assert again.delete == []
    past = [m for m in taken if m <= now]
    assert len(past) == 0 or len(set(plan.keep) & {name_at(m) for m in past}) <= 27
    if past and max(past) > now - dt.timedelta(days=7):
        assert name_at(max(past)) in plan.keep


def test_s3_storage_from_the_settings_is_built_without_touching_the_network(backup_settings):
    backup_settings.BACKUP_STORAGE = "storages.backends.s3.S3Storage"
    backup_settings.BACKUP_STORAGE_OPTIONS = {"bucket_name": "artemis-backups", "location": "registrations"}

    storage = backups.backup_storage()

    assert (storage.bucket_name, storage.location) == ("artemis-backups", "registrations")
    assert backups.describe_storage(storage) == "storages.backends.s3.S3Storage"


@pytest.mark.parametrize("command", ["backup_registrations", "prune_backups", "verify_backups"])
def test_an_unreachable_s3_bucket_is_a_one_line_command_error(backup_settings, command, unreachable_s3):
    """A real S3 client against a loopback port where nothing listens: refused at once, no traceback."""
    backup_settings.BACKUP_STORAGE = "storages.backends.s3.S3Storage"
    backup_settings.BACKUP_STORAGE_OPTIONS = unreachable_s3("artemis-backups")
    with pytest.raises(CommandError) as refused:
        call_command(command, verbosity=0)
    assert "\n" not in str(refused.value)
    assert str(refused.value).split(":")[0] in {"Backup failed", "Prune failed", "Verify failed"}


@given(
    st.lists(
        st.text(max_size=60) | st.from_regex(r"\.?registrations-[0-9]{8}T[0-9]{6}Z\.backup.*", fullmatch=True)
    )
)
def test_retention_accepts_any_file_names_and_never_deletes_one_it_does_not_recognise(names):
    plan = backups.plan_retention(names, now=dt.datetime(2026, 2, 4, tzinfo=UTC))

    for name in plan.delete:
        assert backups.parse_backup_name(name) or backups.PARTIAL_RE.fullmatch(name)
    assert set(plan.keep) | set(plan.delete) | set(plan.ignored) == set(names)
