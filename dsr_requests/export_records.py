"""What a rights-request record in an export holds: the request, everything that hangs off it, no staff names.

``RightsRequestProvider.export`` reads a person's requests 500 at a time; for each chunk,
``related_rows`` reads every related table once (a fixed number of queries per chunk, whatever the record
count), as plain tuples rather than model instances, and ``request_record`` puts one request's record
together. Everything the portal holds about the person is in it (Art. 15(1) and (3) GDPR): the request's
fields and dates, the whole timeline including staff-only notes, identity checks, documents awaiting a
check (metadata only), account-proof codes (times only), questions and answers, emails (without their
text), corrections, exports and their downloads, the fulfilment job, and the staff-access log.

Staff are other people (Art. 15(4)): wherever one acted the record says ``"staff"``, and
``StaffRedactor`` replaces their user names, email addresses and full names inside text that staff or
the system wrote. Security credentials (token and code hashes, the email blind index) are never read.
What is left out, and why, is what ``RightsRequestProvider.withheld`` lists for the export's README.
"""

import re

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db.models import Q

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

# How a staff member appears in an export, instead of their name.
STAFF = "staff"
# What made an identity check that no staff member made (the email link, the account proof).
AUTOMATIC = "automatic"
# Shorter identifiers are not redacted: a two-letter user name would eat ordinary words.
MIN_IDENTIFIER = 3

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


def _grouped(queryset, columns, *, key="request_id"):
    """``{key: [row, ...]}`` from ``queryset``; ``columns`` maps model field to record key."""
    rows = {}
    for key_value, *values in queryset.values_list(key, *columns):
        rows.setdefault(key_value, []).append(dict(zip(columns.values(), values, strict=True)))
    return rows


def related_rows(request_ids, *, redact):
    """Every related row of some requests, as plain dicts grouped by request id (12 queries)."""
    ids = list(request_ids)
    related = {
        "timeline": _grouped(
            RequestEvent.objects.filter(request_id__in=ids).order_by("created_at", "id"),
            {
                "created_at": "at",
                "from_state": "from_state",
                "to_state": "state",
                "actor_kind": "actor",
                "public": "public",
                "note": "note",
            },
        ),
        "identity_checks": _grouped(
            IdentityCheck.objects.filter(request_id__in=ids).order_by("checked_at", "id"),
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
        "identity_documents": _grouped(
            IdentityDocument.objects.filter(request_id__in=ids).order_by("uploaded_at", "id"),
            {"uploaded_at": "uploaded_at", "content_type": "content_type", "size": "size"},
        ),
        # Never the code's hash: it is a credential.
        "account_codes": _grouped(
            AccountProofCode.objects.filter(request_id__in=ids).order_by("created_at", "id"),
            {"created_at": "created_at", "expires_at": "expires_at", "used_at": "used_at"},
        ),
        "questions": _grouped(
            StaffQuestion.objects.filter(request_id__in=ids).order_by("asked_at", "id"),
            {
                "asked_at": "asked_at",
                "question": "question",
                "answer": "answer",
                "answered_at": "answered_at",
            },
        ),
        # Never the bodies: cleared once sent, and holding live links and codes until then.
        "emails": _grouped(
            OutboundEmail.objects.filter(request_id__in=ids).order_by("created_at", "id"),
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
        "corrections": _grouped(
            Rectification.objects.filter(request_id__in=ids).order_by("recorded_at", "id"),
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
        "exports": _grouped(
            DataExport.objects.filter(request_id__in=ids).order_by("created_at", "id"),
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
    }
    downloads = _grouped(
        ExportDownload.objects.filter(export__request_id__in=ids).order_by("downloaded_at", "id"),
        {"channel": "channel", "downloaded_at": "downloaded_at"},
        key="export_id",
    )
    codes = _grouped(
        DownloadCode.objects.filter(export__request_id__in=ids).order_by("created_at", "id"),
        {"created_at": "created_at", "expires_at": "expires_at", "used_at": "used_at"},
        key="export_id",
    )
    runs = {
        request_id: {
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
        for request_id, status, started_at, finished_at, attempts, failures, last_error, steps in (
            FulfilmentRun.objects.filter(request_id__in=ids).values_list(
                "request_id",
                "status",
                "started_at",
                "finished_at",
                "attempts",
                "failures",
                "last_error",
                "steps",
            )
        )
    }
    for rows in related["timeline"].values():
        for row in rows:
            row["note"] = redact(row["note"])
    for rows in related["identity_checks"].values():
        for row in rows:
            row["checked_by"] = STAFF if row["checked_by"] else AUTOMATIC
            row["method"], row["note"] = redact(row["method"]), redact(row["note"])
    for rows in related["questions"].values():
        for row in rows:
            row["question"] = redact(row["question"])
    for rows in related["emails"].values():
        for row in rows:
            row["subject"], row["last_error"] = redact(row["subject"]), redact(row["last_error"])
    for rows in related["exports"].values():
        for row in rows:
            export_id = row.pop("id")
            row["downloads"] = downloads.get(export_id, [])
            row["download_codes"] = codes.get(export_id, [])
    correction_requests = {}
    for request_id, rows in related["corrections"].items():
        for row in rows:
            correction_requests[str(row.pop("id"))] = request_id
    related["fulfilment"] = runs
    related["staff_access"] = _staff_access(ids, correction_requests)
    return related


def _staff_access(request_ids, correction_requests):
    """The access audit's entries about these requests and their corrections: when, what, whether it
    worked; never who, from which address or browser (CJEU C-579/21: dates and purposes, not staff)."""
    types = ContentType.objects.get_for_models(RightsRequest, Rectification)
    request_type, correction_type = types[RightsRequest], types[Rectification]
    about = Q(content_type=request_type, object_id__in=[str(pk) for pk in request_ids])
    if correction_requests:
        about |= Q(content_type=correction_type, object_id__in=list(correction_requests))
    rows = {}
    entries = (
        AccessEvent.objects.filter(about)
        .order_by("created_at", "id")
        .values_list("content_type_id", "object_id", "created_at", "action", "detail", "succeeded")
    )
    for content_type_id, object_id, created_at, action, detail, succeeded in entries:
        is_request = content_type_id == request_type.pk
        request_id = int(object_id) if is_request else correction_requests[object_id]
        rows.setdefault(request_id, []).append(
            {"at": created_at, "action": action, "detail": detail, "succeeded": succeeded}
        )
    return rows


def request_record(rights_request, related, *, redact):
    """One request's export record (keys in ``REQUEST_FIELDS`` order) from the chunk's
    ``related_rows``."""
    record = {}
    for name in REQUEST_FIELDS:
        if name in STAFF_LINKS:
            record[name] = STAFF if getattr(rights_request, STAFF_LINKS[name]) else ""
        elif name in related:
            default = None if name == "fulfilment" else []
            record[name] = related[name].get(rights_request.pk, default)
        else:
            value = getattr(rights_request, name)
            record[name] = redact(value) if name in STAFF_TEXT else value
    return record
