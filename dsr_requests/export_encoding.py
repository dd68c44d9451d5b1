"""How export records become text: data.json's JSON and the CSV rows, a batch of records at a time.

Both kinds of export (the ZIP's ``data.json`` and CSVs, the transfer's ``data.json``) and both ways of
building them (in the worker's process, or in helper processes: ``export_parallel``) turn records into
text here, with the same functions, so a batch's bytes do not depend on which process encoded it.

JSON is written by orjson (issue 19, item 4, third round): a C encoder several times faster than the
standard library's for a 53-key record. What it writes parses to exactly what ``json.dumps(value,
ensure_ascii=False, sort_keys=True)`` wrote before (same keys, same key order, same values, same text in
every string, dates and times as ``isoformat()``); only the whitespace changed: no space after ``,`` and
``:`` (orjson has no option for it, and JSON gives whitespace no meaning). Dates and times go through
``_default`` (``isoformat()``) rather than orjson's own formatting, which would drop the seconds of a
UTC offset such as +05:30:15.
"""

import csv
import datetime as dt
import io
from operator import itemgetter
from typing import NamedTuple

import orjson

# Keys sorted (as ``sort_keys=True`` did); dates and times handed to ``_default``.
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
# Records encoded per batch on the in-process path (memory holds one batch's text).
BATCH_RECORDS = 256


def _default(value):
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def dumps(value):
    """``value`` as UTF-8 JSON bytes: sorted keys, no spaces, dates and times as ISO 8601 text."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


class Batch(NamedTuple):
    """Consecutive records of one provider, encoded: their JSON objects joined by ``,``, their CSV rows
    (UTF-8, or ``b""`` when no CSV is wanted), and how many records they are."""

    json: bytes
    csv: bytes
    count: int


def _csv_cell(value):
    if isinstance(value, list | dict):
        return dumps(value).decode()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return "" if value is None else value


def _csv_row(values):
    """``[_csv_cell(value) for value in values]``, with the common cells (text, numbers, nothing, an
    empty list) decided without a call: an export has millions of them."""
    row = []
    for value in values:
        kind = type(value)
        if kind is str or kind is int or kind is bool:
            row.append(value)
        elif value is None:
            row.append("")
        elif kind is list and not value:
            row.append("[]")
        else:
            row.append(_csv_cell(value))
    return row


def csv_header(fields):
    """The CSV's first line: the field names."""
    text = io.StringIO()
    csv.writer(text).writerow(fields)
    return text.getvalue().encode()


class RecordEncoder:
    """Encodes one provider's records into ``Batch``es.

    ``nested``: if given, the only fields whose values may be lists or dicts; every other value is then
    text, a number, a boolean or None, which ``csv.writer`` writes as ``_csv_row`` would (None as an empty
    cell), so only these are converted. Without it every cell is checked.
    """

    def __init__(self, fields, *, nested=None, with_csv=True):
        self._fields = tuple(fields)
        self._nested = None if nested is None else [self._fields.index(name) for name in nested]
        self._with_csv = with_csv and bool(self._fields)
        # All the fields' values in one call (a record holds every field; ``_cells`` if one does not).
        self._values = itemgetter(*self._fields) if len(self._fields) > 1 else None

    def _cells(self, record):
        """The record's values in field order, a missing field as None."""
        if self._values is None:
            return list(map(record.get, self._fields))
        try:
            return list(self._values(record))
        except KeyError:
            return list(map(record.get, self._fields))

    def _row(self, record):
        if self._nested is None:
            return _csv_row(self._cells(record))
        row = self._cells(record)
        for position in self._nested:
            value = row[position]
            if value is None:
                row[position] = ""
            elif type(value) is list and not value:
                row[position] = "[]"
            else:
                row[position] = _csv_cell(value)
        return row

    def encode(self, records):
        """One ``Batch`` of ``records`` (a list)."""
        text = b",".join([orjson.dumps(record, default=_default, option=_OPTIONS) for record in records])
        rows = b""
        if self._with_csv:
            out = io.StringIO()
            csv.writer(out).writerows([self._row(record) for record in records])
            rows = out.getvalue().encode()
        return Batch(text, rows, len(records))

    def batches(self, records, *, size=BATCH_RECORDS):
        """``records`` (any iterable) as ``Batch``es of at most ``size`` records, in order."""
        pending = []
        for record in records:
            pending.append(record)
            if len(pending) >= size:
                yield self.encode(pending)
                pending = []
        if pending:
            yield self.encode(pending)
