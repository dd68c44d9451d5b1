"""The request log regulators ask for: one CSV row per request, no personal data beyond the reference.

Columns follow what the ICO and the CCPA regulations (11 CCR 7101) expect a record of requests to hold:
when it came in, what kind, through which channel, when and how it was answered, and why a denial.
"""

import csv

from django.utils import timezone

from dsr_requests.models import Channel, RejectionGround, RequestState, RightsRequest

# The log's words for each channel (stable, in English, like the other columns' values).
CHANNEL_WEB_FORM = "web form"  # kept importable: earlier callers named the one channel there was
CHANNELS = {
    Channel.WEB: CHANNEL_WEB_FORM,
    Channel.EMAIL: "email",
    Channel.POST: "post",
    Channel.PHONE: "phone",
}
HEADER = (
    "reference",
    "request_type",
    "channel",
    "regime",
    "date_received",
    "policy_due_date",
    "statutory_due_date",
    "extended_on",
    "state",
    "outcome",
    "response_date",
    "days_to_respond",
    "reason_for_denial",
    "by_authorized_agent",
)
OUTCOMES = {
    RequestState.COMPLETED: "fulfilled",
    RequestState.REJECTED: "denied",
    RequestState.WITHDRAWN: "withdrawn",
    RequestState.CLOSED_UNVERIFIED: "closed: identity not verified",
}


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a streaming response."""

    def write(self, value):
        return value


def _cell(value):
    """Neutralise text a spreadsheet would run as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _date(value):
    return timezone.localdate(value).isoformat() if value else ""


def rows():
    """One tuple per request, oldest first, read in chunks so memory stays flat however long the log."""
    fields = (
        "reference",
        "request_type",
        "channel",
        "regime",
        "state",
        "received_at",
        "policy_due_on",
        "statutory_due_on",
        "extended_at",
        "closed_at",
        "rejection_ground",
        "by_agent",
    )
    for r in RightsRequest.objects.order_by("received_at", "pk").values(*fields).iterator(chunk_size=2000):
        closed = r["closed_at"]
        days = (timezone.localdate(closed) - timezone.localdate(r["received_at"])).days if closed else ""
        yield (
            r["reference"],
            r["request_type"],
            # How it reached us (11 CCR 7101(a): "the manner in which the request was made").
            CHANNELS[r["channel"]],
            r["regime"],
            _date(r["received_at"]),
            r["policy_due_on"].isoformat() if r["policy_due_on"] else "",
            r["statutory_due_on"].isoformat() if r["statutory_due_on"] else "",
            _date(r["extended_at"]),
            r["state"],
            OUTCOMES.get(r["state"], "open"),
            _date(closed),
            days,
            # The ground, never the free-text reason: that was written to the requester and may name them.
            str(GROUNDS.get(r["rejection_ground"], "")),
            "yes" if r["by_agent"] else "no",
        )


GROUNDS = dict(RejectionGround.choices)


def csv_lines():
    """The log as CSV text, line by line (for a streaming download)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(HEADER)
    for row in rows():
        yield writer.writerow(row)
