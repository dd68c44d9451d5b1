"""What a rights-request record in an export holds: the request, everything that hangs off it, no staff names.

``RightsRequestProvider.export`` calls ``export_requests``, which reads a person's requests in one
ordered query (500 rows per round trip), decrypts each chunk's encrypted columns in one go
(``artemis_portal.fernet_bulk``), and reads every related table in one query of its own, ordered the
same way, merging its rows in as the requests go by: 13 queries per export whatever the record count
(issue 19: the earlier 12 queries per chunk of 500, each with 500 ids to bind, cost more than the
records themselves), plain tuples rather than model instances.

Everything the portal holds about the person is in it (Art. 15(1) and (3) GDPR): the request's fields
and dates, the whole timeline including staff-only notes, identity checks, documents awaiting a
check (metadata only), account-proof codes (times only), questions and answers, emails (without their
text), corrections, exports and their downloads, the fulfilment job, and the staff-access log.

Staff are other people (Art. 15(4)): wherever one acted the record says ``"staff"``, and
``StaffRedactor`` replaces their user names, email addresses and full names inside text that staff or
the system wrote. Security credentials (token and code hashes, the email blind index) are never read.
What is left out, and why, is what ``RightsRequestProvider.withheld`` lists for the export's README.
"""

import datetime as dt
import re
from itertools import islice

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db.models import (
    BigIntegerField,
    BooleanField,
    CharField,
    DateField,
    F,
    Func,
    OuterRef,
    Q,
    Subquery,
    TextField,
)
from django.db.models.functions import Cast
from fernet_fields import EncryptedField

from artemis_portal.fernet_bulk import BulkDecryptor
from dsr_requests.models import (
    AccountProofCode,
    DataExport,
    DownloadCode,
    ExportDownload,
    FulfilmentRun,
    IdentityCheck,
    IdentityDocument,
    OutboundEmail,
    Rectification,
    RequestEvent,
    RightsRequest,
    StaffQuestion,
)
from security.models import AccessEvent

# The keys of one request's export record, in order: RightsRequestProvider.fields (the CSV columns and
# the documented JSON schema).
REQUEST_FIELDS = (
    "reference",
    "request_type",
    "state",
    "held_from_state",
    "concerns",
    "country",
    "regime",
    "received_at",
    "created_at",
    "updated_at",
    "email_confirmed_at",
    "reminder_sent_at",
    "policy_due_on",
    "statutory_due_on",
    "effective_due_on",
    "channel",
    "by_agent",
    "agent_name",
    "agent_email",
    "held_since",
    "hold_reason",
    "hold_working_days",
    "hold_calendar_days",
    "extended_at",
    "extension_calendar_days",
    "extension_working_days",
    "extension_reason",
    "rejection_reason",
    "rejection_ground",
    "closed_at",
    "erased_at",
    "name",
    "email",
    "site_url",
    "details",
    "transfer_to",
    "transfer_email",
    "account_id",
    "site_client_key",
    "verified_site_url",
    "assignee",
    "approved_by",
    "erasure_approved_by",
    "timeline",
    "identity_checks",
    "identity_documents",
    "account_codes",
    "questions",
    "emails",
    "corrections",
    "exports",
    "fulfilment",
    "staff_access",
)

# The keys that hold lists or a dict (or None); every other key of a record holds text, a number, a
# boolean or None (dates and times already as ISO 8601 text), so the CSV row converts only these.
NESTED_FIELDS = REQUEST_FIELDS[REQUEST_FIELDS.index("timeline") :]

# How a staff member appears in an export, instead of their name.
STAFF = "staff"
# What made an identity check that no staff member made (the email link, the account proof).
AUTOMATIC = "automatic"
# Shorter identifiers are not redacted: a two-letter user name would eat ordinary words.
MIN_IDENTIFIER = 3
# Rights requests read per database round trip, and decrypted per batch.
CHUNK = 500
# Related rows read per database round trip.
RELATED_CHUNK = 2000

# Free text staff (or the system, quoting staff) wrote: staff identities are redacted in it.
STAFF_TEXT = ("extension_reason", "rejection_reason")
# Staff members referred to by a foreign key: the record says whether one is set, never who.
STAFF_LINKS = {
    "assignee": "assignee_id",
    "approved_by": "approved_by_id",
    "erasure_approved_by": "erasure_approved_by_id",
}


class StaffRedactor:
    """Replaces staff members' user names, email addresses and full names in text with ``"staff"``.

    Built once per export from every user account (the portal's only accounts are staff), skipping the
    subject's own account if they happen to be staff too: their own name is theirs to see.
    """

    def __init__(self, *, subject_email=""):
        own = (subject_email or "").casefold()
        identifiers = set()
        users = get_user_model().objects.values_list("username", "email", "first_name", "last_name")
        for username, email, first_name, last_name in users.iterator():
            if own and (email or "").casefold() == own:
                continue
            full_name = f"{first_name} {last_name}".strip()
            identifiers.update(
                value for value in (username, email, full_name) if value and len(value) >= MIN_IDENTIFIER
            )
        # Longest first, so an email address is replaced whole, not just the user name inside it.
        alternatives = "|".join(re.escape(value) for value in sorted(identifiers, key=len, reverse=True))
        self._pattern = (
            re.compile(rf"(?<![\w@.+-])(?:{alternatives})(?![\w@-])", re.IGNORECASE) if alternatives else None
        )

    def __call__(self, text):
        """``text`` with every staff identifier replaced; empty or None stays as it is."""
        if not text or self._pattern is None:
            return text
        return self._pattern.sub(STAFF, text)


# The related tables of a request's record: record key -> (model, path to the request, own order,
# {column: record key}). Rows are read for all the subject's requests at once, in the export's request
# order, then the row's own order (what each table's Meta.ordering gives on the admin pages).
RELATED = {
    "timeline": (
        RequestEvent,
        "request",
        ("created_at", "id"),
        {
            "created_at": "at",
            "from_state": "from_state",
            "to_state": "state",
            "actor_kind": "actor",
            "public": "public",
            "note": "note",
        },
    ),
    "identity_checks": (
        IdentityCheck,
        "request",
        ("checked_at", "id"),
        {
            "checked_at": "checked_at",
            "step": "step",
            "method": "method",
            "outcome": "outcome",
            "actor_id": "checked_by",
            "note": "note",
        },
    ),
    # Never the content: only what it was and when it came (the README says why).
    "identity_documents": (
        IdentityDocument,
        "request",
        ("uploaded_at", "id"),
        {"uploaded_at": "uploaded_at", "content_type": "content_type", "size": "size"},
    ),
    # Never the code's hash: it is a credential.
    "account_codes": (
        AccountProofCode,
        "request",
        ("created_at", "id"),
        {"created_at": "created_at", "expires_at": "expires_at", "used_at": "used_at"},
    ),
    "questions": (
        StaffQuestion,
        "request",
        ("asked_at", "id"),
        {"asked_at": "asked_at", "question": "question", "answer": "answer", "answered_at": "answered_at"},
    ),
    # Never the bodies: cleared once sent, and holding live links and codes until then.
    "emails": (
        OutboundEmail,
        "request",
        ("created_at", "id"),
        {
            "created_at": "created_at",
            "event": "event",
            "to": "to",
            "subject": "subject",
            "status": "status",
            "attempts": "attempts",
            "last_error": "last_error",
            "sent_at": "sent_at",
        },
    ),
    "corrections": (
        Rectification,
        "request",
        ("recorded_at", "id"),
        {
            "id": "id",
            "provider": "provider",
            "field": "field",
            "new_value": "new_value",
            "recorded_at": "recorded_at",
            "applied_at": "applied_at",
        },
    ),
    # Never the file name (internal) or the transfer link's hash (a credential).
    "exports": (
        DataExport,
        "request",
        ("created_at", "id"),
        {
            "id": "id",
            "kind": "kind",
            "created_at": "created_at",
            "expires_at": "expires_at",
            "purged_at": "purged_at",
            "records": "records",
            "size": "size",
            "sha256": "sha256",
            "link_used_at": "link_used_at",
        },
    ),
    "downloads": (
        ExportDownload,
        "export__request",
        ("downloaded_at", "id"),
        {"export_id": "export_id", "channel": "channel", "downloaded_at": "downloaded_at"},
    ),
    "download_codes": (
        DownloadCode,
        "export__request",
        ("created_at", "id"),
        {
            "export_id": "export_id",
            "created_at": "created_at",
            "expires_at": "expires_at",
            "used_at": "used_at",
        },
    ),
    "fulfilment": (
        FulfilmentRun,
        "request",
        ("id",),
        {
            "status": "status",
            "started_at": "started_at",
            "finished_at": "finished_at",
            "attempts": "attempts",
            "failures": "failures",
            "last_error": "last_error",
            "steps": "steps",
        },
    ),
}


class _Stream:
    """One ordered query's rows ``(received_at, request id, *values)``, taken a request at a time.

    The rows come in the main query's order (the request's ``received_at``, then its id), so the rows of
    each request are next to each other; a row whose request the main query did not yield (added in
    between) is skipped rather than stalling the stream.
    """

    __slots__ = ("_rows", "head")

    def __init__(self, rows):
        self._rows = iter(rows)
        self.head = next(self._rows, None)

    def take(self, key):
        """The value tuples of the request whose sort key is ``key`` (``(received_at, id)``)."""
        taken = []
        while (head := self.head) is not None:
            here = (head[0], head[1])
            if here > key:
                break
            if here == key:
                taken.append(head[2:])
            self.head = next(self._rows, None)
        return taken


class AnyOf(Func):
    """``expression = ANY(%s::bigint[])`` (PostgreSQL) with integer ids as one array literal ``{1,2,...}``:
    a range's 2,000 ids cost the database one constant to parse, not 2,000 (``export_parallel``;
    measured: 7 ms a query with the ids as an ``ARRAY[...]`` of parameters, most of it for an empty
    table). ``text=True`` compares with the ids as text (the access audit's ``object_id``)."""

    output_field = BooleanField()

    def __init__(self, expression, ids, *, text=False):
        super().__init__(expression)
        self.literal = ids if isinstance(ids, str) else id_array(ids)
        self.cast = "varchar[]" if text else "bigint[]"

    def as_sql(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"{sql} = ANY(%s::{self.cast})", (*params, self.literal)


def id_array(ids):
    """Integer ids as a PostgreSQL array literal, ``{1,2,3}`` (built once per range, used by every query)."""
    return "{" + ",".join(map(str, map(int, ids))) + "}"


def _rows(queryset, ids, chunk):
    """The rows of ``queryset``: a chunk per round trip (a server-side cursor on PostgreSQL), or, for a
    range of ``ids``, all at once: for a server-side cursor PostgreSQL plans for the first rows and would
    walk the whole ``received_at`` index rather than look up a range's keys (measured: 0.56 s instead of
    0.07 s for 2,000 requests)."""
    return iter(queryset) if ids is not None else queryset.iterator(chunk_size=chunk)


def _of_requests(requests, ids, path):
    """The filter of rows whose ``path`` (a request id) is one of ``requests``: a subquery, or with ``ids``
    (the requests' ids, PostgreSQL) the ids directly, so the database looks up only these keys."""
    if ids is not None:
        return AnyOf(F(path), ids)
    return Q(**{f"{path}__in": requests.values("pk")})


def _related_stream(requests, ids, model, path, order, columns):
    request_id = f"{path}_id" if path == "request" else f"{path}__id"
    rows = (
        model.objects.filter(_of_requests(requests, ids, request_id))
        .order_by(f"{path}__received_at", request_id, *order)
        .values_list(f"{path}__received_at", request_id, *columns)
    )
    return _Stream(_rows(rows, ids, RELATED_CHUNK))


def _staff_access_streams(requests, ids):
    """The access audit's entries about these requests, and about their corrections (two streams of
    ``(received_at, request id, created_at, id, action, detail, succeeded)``)."""
    types = ContentType.objects.get_for_models(RightsRequest, Rectification)
    columns = ("created_at", "id", "action", "detail", "succeeded")
    received = RightsRequest.objects.filter(pk=OuterRef("request_key")).values("received_at")
    about_requests = (
        AccessEvent.objects.filter(content_type=types[RightsRequest])
        .filter(
            Q(object_id__in=requests.annotate(key=Cast("pk", CharField())).values("key"))
            if ids is None
            else AnyOf(F("object_id"), ids, text=True)  # the audit's object_id is text
        )
        .annotate(request_key=Cast("object_id", BigIntegerField()))
        .annotate(request_received=Subquery(received))
    )
    corrections = Rectification.objects.filter(_of_requests(requests, ids, "request_id"))
    about_corrections = (
        AccessEvent.objects.filter(
            content_type=types[Rectification],
            object_id__in=corrections.annotate(key=Cast("pk", CharField())).values("key"),
        )
        .annotate(correction_key=Cast("object_id", BigIntegerField()))
        .annotate(
            request_key=Subquery(
                Rectification.objects.filter(pk=OuterRef("correction_key")).values("request_id")
            )
        )
        .annotate(request_received=Subquery(received))
    )
    return [
        _Stream(
            _rows(
                events.order_by("request_received", "request_key", "created_at", "id").values_list(
                    "request_received", "request_key", *columns
                ),
                ids,
                RELATED_CHUNK,
            )
        )
        for events in (about_requests, about_corrections)
    ]


class _TextOnPostgreSQL(Func):
    """A column as text PostgreSQL writes (``postgresql``, the column's SQL in ``{}``); elsewhere the column
    as stored."""

    output_field = TextField()
    postgresql = "{}"

    def as_sql(self, compiler, connection, **extra_context):
        return compiler.compile(self.source_expressions[0])

    def as_postgresql(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.source_expressions[0])
        return self.postgresql.format(sql), params


class TokenText(_TextOnPostgreSQL):
    """An encrypted column's stored Fernet token, undecrypted: on PostgreSQL as text, elsewhere as stored.

    Why: psycopg2 receives a ``bytea`` column in hex (two characters a byte) and unescapes it into a
    ``memoryview``; for the seven tokens of each record that was most of the time spent fetching (0.36 s
    against 0.07 s as text for 20,000 records). A token is url-safe base64, so ``encode(..., 'escape')``
    returns its bytes unchanged as ASCII text; a damaged token with other bytes comes back escaped (still
    ASCII) and fails the HMAC check as it would have as bytes. ``BulkDecryptor`` takes either form.
    """

    postgresql = "encode({}, 'escape')"


class DateText(_TextOnPostgreSQL):
    """A date or time column as PostgreSQL's own text for it (``::text``); elsewhere the column as stored.

    Why (issue 19, item 4, fourth round): PostgreSQL sends every value as text anyway; letting psycopg2
    parse four timestamps a record into ``datetime`` objects only for the export to write them back as
    text with ``isoformat()`` cost about 4 µs a record of the helpers' time. ``iso_text`` turns that text
    into exactly what ``isoformat()`` wrote (tested against it with Hypothesis).
    """

    postgresql = "({})::text"


def iso_text(value):
    """A date or time (a ``date``/``datetime``, or ``DateText``'s PostgreSQL text) as ISO 8601 text, exactly
    as ``value.isoformat()`` writes it (for a time: in UTC, the connection's time zone under ``USE_TZ``).

    PostgreSQL writes ``2026-12-06 06:57:12.2445+00`` (the fraction without trailing zeros, none when
    zero); ``isoformat()`` writes ``2026-12-06T06:57:12.244500+00:00``. Any other form (another time
    zone, say) goes through ``datetime.fromisoformat``.
    """
    if type(value) is not str:
        return value.isoformat()
    if len(value) == 10:  # a date: YYYY-MM-DD, the same text
        return value
    if value[10:11] == " " and value[-3:] == "+00":
        if len(value) == 22:
            return f"{value[:10]}T{value[11:19]}+00:00"
        if value[19] == ".":
            return f"{value[:10]}T{value[11:19]}.{value[20:-3].ljust(6, '0')}+00:00"
    return dt.datetime.fromisoformat(value).isoformat()


def _columns(names):
    """The main query's expressions for the record's own fields (encrypted ones as raw bytes, decrypted
    in bulk), and the positions of the encrypted, staff-link, staff-text and date/time ones."""
    expressions, encrypted, links, texts, dates = {}, [], [], [], []
    for position, name in enumerate(names):
        field = RightsRequest._meta.get_field(name) if name not in STAFF_LINKS else None
        if name in STAFF_LINKS:
            expressions[name] = STAFF_LINKS[name]
            links.append(position)
        elif isinstance(field, EncryptedField):
            expressions[name] = TokenText(F(name))
            encrypted.append(position)
        else:
            expressions[name] = name
            if name in STAFF_TEXT:
                texts.append(position)
            if isinstance(field, DateField):  # DateTimeField is a DateField too
                expressions[name] = DateText(F(name))
                dates.append(position)
    return expressions, encrypted, links, texts, dates


def _next_key(streams):
    """The smallest ``(received_at, request id)`` any related stream still holds; None when all are done."""
    keys = [(head[0], head[1]) for head in (stream.head for stream in streams) if head is not None]
    return min(keys) if keys else None


def tables_with_rows(requests):
    """The names of the related streams (``RELATED``'s, and ``"staff_access"``) that hold any row about
    ``requests``: ``export_parallel`` reads only these for each range (one query each, once per export,
    rather than one per range for a table with nothing about the subject)."""
    names = {
        name
        for name, (model, path, _order, _columns) in RELATED.items()
        if model.objects.filter(**{f"{path}__in": requests.values("pk")}).exists()
    }
    if any(stream.head is not None for stream in _staff_access_streams(requests, None)):
        names.add("staff_access")
    return names


_EMPTY = ()


def export_requests(requests, *, fields, redact, ids=None, tables=None):
    """Yield the export record of each request in ``requests`` (a queryset; keys in ``fields`` order),
    oldest first, reading 500 requests per round trip and each related table in one ordered query.

    ``ids``: the ids of ``requests``, on PostgreSQL, when they are few (a helper's range in
    ``export_parallel``): the related tables are then read by these keys rather than through a subquery.
    ``tables``: if given, the related streams that may hold rows (``tables_with_rows``); the others are
    not read.
    """
    own = [name for name in fields if name not in RELATED and name not in ("staff_access",)]
    related_names = [name for name in fields if name not in own]
    names = own + related_names  # what the records hold, in this order
    expressions, encrypted, links, texts, dates = _columns(own)
    if ids is not None and not isinstance(ids, str):
        ids = id_array(ids)
    decrypt = BulkDecryptor(RightsRequest._meta.get_field("name").fernet_keys).decrypt_many
    # Each row ends with the request's sort key: ``received_at`` as a ``datetime`` (the record's own
    # copy may be text: ``DateText``) and the id.
    ordered = requests.order_by("received_at", "pk")
    rows = _rows(ordered.values_list(*expressions.values(), "received_at", "pk"), ids, CHUNK)
    streams = {
        name: _related_stream(requests, ids, *RELATED[name])
        if tables is None or name in tables
        else _Stream(_EMPTY)
        for name in RELATED
    }
    access = (
        _staff_access_streams(requests, ids)
        if tables is None or "staff_access" in tables
        else [_Stream(_EMPTY), _Stream(_EMPTY)]
    )
    timeline, checks, documents, account_codes, questions, emails, corrections, exports_, runs = (
        streams[name]
        for name in (
            "timeline",
            "identity_checks",
            "identity_documents",
            "account_codes",
            "questions",
            "emails",
            "corrections",
            "exports",
            "fulfilment",
        )
    )
    downloads, download_codes = streams["downloads"], streams["download_codes"]
    every_stream = [*streams.values(), *access]
    # What a request with no related rows at all holds in its related keys (most requests of a person
    # with many: it skips the thirteen stream look-ups and list building below).
    nothing_related = [name != "fulfilment" for name in related_names]
    next_key = _next_key(every_stream)
    while chunk := list(islice(rows, CHUNK)):
        plain = iter(decrypt([row[position] for row in chunk for position in encrypted]))
        for row in chunk:
            values = list(row)
            request_id = values.pop()
            key = (values.pop(), request_id)
            for position in encrypted:
                text = next(plain)
                values[position] = None if text is None else text.decode()
            for position in links:
                values[position] = STAFF if values[position] else ""
            for position in texts:
                values[position] = redact(values[position])
            # Dates and times as the export writes them (JSON and CSV alike), converted once here rather
            # than by the JSON encoder's fallback and again for the CSV row.
            for position in dates:
                value = values[position]
                if value is not None:
                    values[position] = iso_text(value)
            if next_key is None or key < next_key:
                values.extend([[] if is_list else None for is_list in nothing_related])
                yield dict(zip(names, values, strict=True))
                continue
            related = {
                "timeline": [
                    {
                        "at": at,
                        "from_state": old,
                        "state": new,
                        "actor": actor,
                        "public": public,
                        "note": redact(note),
                    }
                    for at, old, new, actor, public, note in timeline.take(key)
                ],
                "identity_checks": [
                    {
                        "checked_at": at,
                        "step": step,
                        "method": redact(method),
                        "outcome": outcome,
                        "checked_by": STAFF if actor else AUTOMATIC,
                        "note": redact(note),
                    }
                    for at, step, method, outcome, actor, note in checks.take(key)
                ],
                "identity_documents": _dicts(RELATED["identity_documents"], documents.take(key)),
                "account_codes": _dicts(RELATED["account_codes"], account_codes.take(key)),
                "questions": [
                    {
                        "asked_at": asked,
                        "question": redact(question),
                        "answer": answer,
                        "answered_at": answered,
                    }
                    for asked, question, answer, answered in questions.take(key)
                ],
                "emails": [
                    {
                        "created_at": created,
                        "event": event,
                        "to": to,
                        "subject": redact(subject),
                        "status": status,
                        "attempts": attempts,
                        "last_error": redact(error),
                        "sent_at": sent,
                    }
                    for created, event, to, subject, status, attempts, error, sent in emails.take(key)
                ],
            }
            correction_rows = corrections.take(key)
            related["corrections"] = [
                {
                    "provider": provider,
                    "field": field,
                    "new_value": value,
                    "recorded_at": recorded,
                    "applied_at": applied,
                }
                for _id, provider, field, value, recorded, applied in correction_rows
            ]
            related["exports"] = _exports(exports_.take(key), downloads.take(key), download_codes.take(key))
            run = runs.take(key)
            related["fulfilment"] = _run(run[0], redact) if run else None
            about_request, about_corrections = (stream.take(key) for stream in access)
            entries = about_request + about_corrections
            if about_request and about_corrections:
                entries.sort(key=lambda entry: (entry[0], entry[1]))
            related["staff_access"] = [
                {"at": at, "action": action, "detail": detail, "succeeded": succeeded}
                for at, _id, action, detail, succeeded in entries
            ]
            values.extend(related[name] for name in related_names)
            next_key = _next_key(every_stream)
            yield dict(zip(names, values, strict=True))


def _dicts(spec, rows):
    keys = tuple(spec[3].values())
    return [dict(zip(keys, row, strict=True)) for row in rows]


def _exports(rows, downloads, codes):
    """The request's exports, each with its downloads and download codes (no ids)."""
    if not rows:
        return []
    by_export = {}
    for export_id, channel, at in downloads:
        by_export.setdefault(export_id, ([], []))[0].append({"channel": channel, "downloaded_at": at})
    for export_id, created, expires, used in codes:
        by_export.setdefault(export_id, ([], []))[1].append(
            {"created_at": created, "expires_at": expires, "used_at": used}
        )
    records = []
    for export_id, kind, created, expires, purged, count, size, sha256, link_used in rows:
        export_downloads, export_codes = by_export.get(export_id, ([], []))
        records.append(
            {
                "kind": kind,
                "created_at": created,
                "expires_at": expires,
                "purged_at": purged,
                "records": count,
                "size": size,
                "sha256": sha256,
                "link_used_at": link_used,
                "downloads": export_downloads,
                "download_codes": export_codes,
            }
        )
    return records


def _run(row, redact):
    status, started_at, finished_at, attempts, failures, last_error, steps = row
    return {
        "status": status,
        "started_at": started_at,
        "finished_at": finished_at,
        "attempts": attempts,
        "failures": failures,
        "last_error": redact(last_error),
        "steps": sorted(
            ({"step": step, "done_at": done.get("done_at")} for step, done in (steps or {}).items()),
            key=lambda item: (item["done_at"] or "", item["step"]),
        ),
    }
