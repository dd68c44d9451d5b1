"""The export file format: encrypted frames, streaming, tamper-evident, never a readable ZIP at rest."""

import csv
import io
import json
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsr_requests import export_encoding, exports


def encrypt(data):
    out = io.BytesIO()
    writer = exports.EncryptingWriter(out, exports.export_fernet())
    writer.write(data)
    writer.close()
    return out.getvalue()


def decrypt(tmp_path, stored):
    path = tmp_path / "x.export"
    path.write_bytes(stored)
    with open(path, "rb") as handle:
        return b"".join(exports.iter_plain(handle))


@settings(max_examples=25)
@given(data=st.binary(max_size=3000), frame=st.integers(min_value=1, max_value=700))
def test_any_bytes_round_trip_through_frames_of_any_size(tmp_path_factory, data, frame):
    tmp_path = tmp_path_factory.mktemp("frames")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exports, "FRAME_BYTES", frame)
        stored = encrypt(data)
    assert decrypt(tmp_path, stored) == data


def test_a_zip_written_through_the_writer_is_not_a_zip_at_rest(tmp_path):
    out = io.BytesIO()
    writer = exports.EncryptingWriter(out, exports.export_fernet())
    with zipfile.ZipFile(writer, "w") as archive:
        archive.writestr("README.txt", "secret@example.org")
    writer.close()
    stored = out.getvalue()
    assert not zipfile.is_zipfile(io.BytesIO(stored))
    assert b"secret@example.org" not in stored and b"PK" not in stored[:64]
    assert zipfile.ZipFile(io.BytesIO(decrypt(tmp_path, stored))).read("README.txt") == b"secret@example.org"


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-5],  # truncated
        lambda data: data[:40] + bytes([data[40] ^ 1]) + data[41:],  # one bit flipped
        lambda data: data + b"extra",  # bytes after the manifest
        lambda data: b"PK\x03\x04" + data,  # not an export
    ],
)
def test_a_damaged_file_is_refused(tmp_path, damage):
    stored = encrypt(b"hello world" * 100)
    with pytest.raises(exports.ExportError):
        decrypt(tmp_path, damage(stored))


def test_a_missing_file_is_refused_before_any_byte_is_read(settings, tmp_path):
    settings.EXPORT_DIR = tmp_path
    with pytest.raises(exports.ExportMissing):
        exports.open_export("DSR-NOPE00-zip.export")


@pytest.mark.parametrize(
    ("name", "ours"),
    [
        ("DSR-7K3M9Q-zip.export", True),
        ("DSR-7K3M9Q-json.export", True),
        (".DSR-7K3M9Q-zip.export.k2_x9abc.partial", True),
        (".DSR-7K3M9Q-zip.export.partial", True),  # the name before exports were published by storage
        ("backup-20261128T120000Z.artbak", False),
        ("notes.txt", False),
        (".DSR-7K3M9Q-zip.export.partial.bak", False),
    ],
)
def test_only_export_file_names_count_as_ours(name, ours):
    assert exports.is_export_file(name) is ours


def test_the_export_key_is_not_a_field_key(settings):
    from cryptography.fernet import Fernet, InvalidToken

    token = exports.export_fernet().encrypt(b"x")
    for key in settings.FERNET_KEYS:
        with pytest.raises((InvalidToken, ValueError)):
            Fernet(key).decrypt(token)


def _subject_with(records, *, prefix=None):
    """A person with ``records`` earlier requests (each with a staff-only note), and their approved copy
    request. ``prefix`` (one letter) keeps references apart when a test makes several such people."""
    from django.utils import timezone

    from dsr_requests import services, tokens
    from dsr_requests.models import RequestEvent, RequestType, RightsRequest
    from dsr_requests.tests.factories import approved_request

    email = f"many{records}@example.org"
    prefix = prefix or chr(65 + len(str(records)))
    RightsRequest.objects.filter(email_hash=tokens.email_blind_index(email)).delete()
    earlier = RightsRequest.objects.bulk_create(
        RightsRequest(
            reference=f"DSR-{prefix}{number:05d}",
            request_type=RequestType.REVIEW,
            state="completed",
            name="Many Records",
            email=email,
            email_hash=tokens.email_blind_index(email),
            details=f"Request {number}",
            received_at=timezone.now(),
        )
        for number in range(records)
    )
    RequestEvent.objects.bulk_create(
        RequestEvent(
            request_id=rights_request.pk,
            from_state="completed",
            to_state="completed",
            actor_kind="system",
            note="An internal note",
        )
        for rights_request in earlier
    )
    rights_request, _token = approved_request(RequestType.COPY, email=email)
    return rights_request, services.subject_for(rights_request)


def _export(tmp_path, rights_request, subject):
    from dsr_requests import providers

    return exports.write_export(
        f"{rights_request.reference}-zip.export",
        kind="zip",
        rights_request=rights_request,
        subject=subject,
        providers=providers.all_providers(),
        activities=[],
    )


@pytest.mark.django_db
def test_export_queries_grow_by_chunk_not_by_record(tmp_path):
    """Every related table is read once per chunk of 500 requests, whatever the record count."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    warm_up = _subject_with(1, prefix="W")  # content types, cached for the process after the first export
    _export(tmp_path, *warm_up)
    queries = {}
    for records, prefix in ((600, "P"), (990, "Q"), (1200, "R")):  # with the copy request: 2, 2, 3 chunks
        rights_request, subject = _subject_with(records, prefix=prefix)
        with CaptureQueriesContext(connection) as captured:
            _size, _sha, exported = _export(tmp_path, rights_request, subject)
        assert exported == records + 1
        queries[records] = len(captured)
    assert queries[600] == queries[990], queries
    # One more chunk, read twice (data.json, then the CSV): the request rows and 12 related tables.
    assert queries[1200] - queries[990] <= 2 * 13, queries


@pytest.mark.django_db
def test_export_query_count_is_the_same_for_any_record_count(tmp_path):
    """Issue 19: the requests and each related table are read in one ordered query each (the rows come
    in chunks over the same cursor), so 600, 1,500 and 3,000 records cost the same queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _export(tmp_path, *_subject_with(1, prefix="V"))  # content types, cached for the process
    queries = {}
    for records, prefix in ((600, "S"), (1500, "T"), (3000, "U")):
        rights_request, subject = _subject_with(records, prefix=prefix)
        with CaptureQueriesContext(connection) as captured:
            _size, _sha, exported = _export(tmp_path, rights_request, subject)
        assert exported == records + 1
        queries[records] = len(captured)
    assert queries[600] == queries[1500] == queries[3000], queries


def test_a_csv_row_converts_only_the_nested_fields_and_writes_what_the_full_check_writes():
    """``RecordEncoder(nested=...)`` trusts every other value to be text, a number, a boolean or None; for
    such records its CSV is byte for byte the CSV of the cell-by-cell conversion, through the spool too."""
    fields = ("text", "number", "flag", "nothing", "when", "items", "empty", "run", "no_run")
    records = [
        {
            "text": 'say "hi", then\nleave ñ',
            "number": 7,
            "flag": True,
            "nothing": None,
            "when": "2026-12-06T04:00:00+00:00",
            "items": [{"at": "2026-12-06", "note": "a, b"}],
            "empty": [],
            "run": {"status": "done", "steps": []},
            "no_run": None,
        }
    ] * (export_encoding.BATCH_RECORDS + 3)  # more than one batch
    out = {}
    for nested in (None, ("items", "empty", "run", "no_run")):
        spool = exports.CsvSpool(fields)
        for batch in export_encoding.RecordEncoder(fields, nested=nested).batches(records):
            spool.add(batch.csv)
        stream = io.BytesIO()
        spool.copy_to(stream)
        out[nested is None] = stream.getvalue()
    assert out[True] == out[False]
    assert out[True].count(b"\r\n") == len(records) + 1  # the header and every row
    rows = list(csv.reader(io.StringIO(out[True].decode())))
    assert rows[1][:5] == ['say "hi", then\nleave ñ', "7", "True", "", "2026-12-06T04:00:00+00:00"]
    assert json.loads(rows[1][5]) == [{"at": "2026-12-06", "note": "a, b"}] and rows[1][6] == "[]"


@pytest.mark.django_db
def test_export_memory_does_not_grow_with_the_record_count(tmp_path):
    import tracemalloc

    peaks = {}
    # Both sizes span several chunks of 500 (a single chunk peaks lower: no garbage of an earlier chunk
    # awaits collection), so the difference measures growth with the record count alone.
    for count, prefix in ((1500, "M"), (6000, "N")):
        rights_request, subject = _subject_with(count, prefix=prefix)
        tracemalloc.start()
        _export(tmp_path, rights_request, subject)
        peaks[count] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # Four times the records, the same chunk size: the peak may not grow by more than 2 MiB.
    assert peaks[6000] - peaks[1500] < 2 * 1024 * 1024, peaks


# What export records hold: nothing, booleans, integers (database columns), text, dates and times (aware,
# in any time zone, or naive), and lists and dicts of them. No floats: no exported column is one.
_JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text()
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.dates(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _isoformat(value):
    return value.isoformat()


@settings(max_examples=300)
@given(value=_JSONISH)
def test_the_export_json_parses_to_what_the_standard_encoder_wrote_in_the_same_key_order(value):
    """Issue 19, item 4: data.json is written by orjson. What it writes parses to what ``json.dumps``
    (sorted keys, not ASCII-only, dates and times by ``isoformat``) wrote before, with the keys in the
    same order and every string's text the same; the bytes are those of ``json.dumps`` without the spaces
    after ``,`` and ``:``."""
    old = json.dumps(value, default=_isoformat, ensure_ascii=False, sort_keys=True)
    new = export_encoding.dumps(value)
    assert json.loads(new, object_pairs_hook=list) == json.loads(old, object_pairs_hook=list)
    compact = json.dumps(value, default=_isoformat, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    assert new == compact.encode()


@settings(max_examples=50)
@given(records=st.lists(st.dictionaries(st.sampled_from("abcdef"), _JSONISH, max_size=6), max_size=8))
def test_a_batch_of_records_is_their_json_objects_joined_by_commas(records):
    batch = export_encoding.RecordEncoder(("a", "b"), with_csv=False).encode(records)
    assert json.loads(b"[" + batch.json + b"]") == json.loads(json.dumps(records, default=_isoformat))
    assert batch.count == len(records) and batch.csv == b""
