"""Issue 19, item 4, fourth round: an export's dates and times come from PostgreSQL as text
(``export_records.DateText``) and are written as ``isoformat()`` wrote them (``export_records.iso_text``).

The export's text for a date or time is part of what the requester gets (Art. 15(3) GDPR: a copy of the
data; Art. 20(1): in a structured, commonly used and machine-readable format), so it must not change with
how it is read: these tests hold the text to ``isoformat()`` for any value PostgreSQL can hold that
Python can.
"""

import datetime as dt

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from dsr_requests.export_encoding import RecordEncoder
from dsr_requests.export_records import iso_text

_UTC = dt.UTC


def _postgresql_text(sql, value):
    with connection.cursor() as cursor:
        cursor.execute(sql, [value])
        return cursor.fetchone()[0]


@pytest.mark.postgres_only
@pytest.mark.django_db
@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=dt.datetime(1, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.sampled_from([_UTC, dt.timezone(dt.timedelta(hours=5, minutes=30))]),
    )
)
def test_a_time_read_as_postgresqls_text_is_written_as_isoformat_wrote_it(moment):
    """Any moment (microseconds, none, years 1 to 9999, any offset on the way in): PostgreSQL's text in
    the connection's time zone (UTC) becomes what ``isoformat()`` wrote for the ``datetime`` read before."""
    text = _postgresql_text("SELECT (%s::timestamptz)::text", moment)
    assert iso_text(text) == moment.astimezone(_UTC).isoformat()


@pytest.mark.postgres_only
@pytest.mark.django_db
@settings(max_examples=100, deadline=None)
@given(day=st.dates())
def test_a_date_read_as_postgresqls_text_is_written_as_isoformat_wrote_it(day):
    assert iso_text(_postgresql_text("SELECT (%s::date)::text", day)) == day.isoformat()


@given(value=st.datetimes(timezones=st.none() | st.timezones()) | st.dates())
def test_a_date_or_time_object_is_written_by_isoformat(value):
    """On SQLite (and for related rows) the values arrive as objects: ``isoformat()`` itself."""
    assert iso_text(value) == value.isoformat()


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("2026-12-06 06:57:12.2445+00", "2026-12-06T06:57:12.244500+00:00"),
        ("2026-12-06 06:57:12+00", "2026-12-06T06:57:12+00:00"),
        ("2026-12-06 12:27:12.5+05:30", "2026-12-06T12:27:12.500000+05:30"),  # another session time zone
        ("2026-12-06", "2026-12-06"),
    ],
)
def test_postgresqls_forms_of_a_time_become_isoformats(text, written):
    assert iso_text(text) == written


def test_a_csv_row_of_a_record_without_some_fields_leaves_their_cells_empty():
    """The encoder reads all fields at once; a record (of another provider) without some writes empty
    cells for them, as before."""
    batch = RecordEncoder(("a", "b", "c")).encode([{"a": "x", "c": 3}, {"a": "y", "b": "z", "c": 4}])
    assert batch.csv == b"x,,3\r\ny,z,4\r\n"
