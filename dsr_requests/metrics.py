"""The yearly request metrics of CCPA regs §7102(a): per request type, for one calendar year.

Every figure is about the requests **received** in the year (``received_at`` in it, local time), so the
columns add up: received = complied with in whole or in part (completed) + denied (rejected) + other
closed (withdrawn, or closed because the email was never confirmed) + still open (today). The days to
respond are calendar days from the date received to the date of the response (``closed_at``), for those of
them that were answered (completed or denied), whenever the answer went out: a request received on
30 December and answered in January belongs to the year it was received in, like its count. The median
is the usual one (the mean of the two middle values for an even count); both are rounded to 0.1 day.

Two queries whatever the number of requests: one grouped count, one read of the answered requests' two
dates (the median needs every value; SQLite has no percentile function).
"""

import csv
import io
import statistics
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from dsr_requests.models import RequestState, RequestType, RightsRequest
from dsr_requests.states import OPEN_STATES

S = RequestState
ANSWERED_STATES = (S.COMPLETED, S.REJECTED)
OTHER_CLOSED_STATES = (S.WITHDRAWN, S.CLOSED_UNVERIFIED)
FIRST_YEAR = 2000
ALL_TYPES = "all"


@dataclass(frozen=True)
class Row:
    """The figures of one request type (or ``all`` of them) for the year."""

    request_type: str
    label: str
    received: int
    complied: int
    denied: int
    other_closed: int
    still_open: int
    median_days: float | None
    mean_days: float | None


class BadYear(ValueError):
    """A year the report cannot be made for; the message says which years it can."""


def parse_year(raw, *, today=None):
    """The year in ``raw`` (a string from a query), or BadYear with a message staff can act on."""
    today = today or timezone.localdate()
    text = (raw or "").strip()
    if not (text.isascii() and text.isdigit() and len(text) == 4):
        raise BadYear(
            _("“%(value)s” is not a year. Give a year from %(first)d to %(last)d, for example %(example)d.")
            % {"value": text[:20], "first": FIRST_YEAR, "last": today.year, "example": today.year - 1}
        )
    year = int(text)
    if not FIRST_YEAR <= year <= today.year:
        raise BadYear(
            _("There are no metrics for %(year)d. Give a year from %(first)d to %(last)d.")
            % {"year": year, "first": FIRST_YEAR, "last": today.year}
        )
    return year


def _bounds(year):
    """The first moment of ``year`` and of the next one, in local time."""
    return (
        timezone.make_aware(datetime(year, 1, 1)),
        timezone.make_aware(datetime(year + 1, 1, 1)),
    )


def _days(values):
    """(median, mean) of a list of day counts, rounded to 0.1; (None, None) for none."""
    if not values:
        return None, None
    return round(float(statistics.median(values)), 1), round(statistics.fmean(values), 1)


def yearly(year):
    """One ``Row`` per request type, in the order of ``RequestType``, then the ``all`` row."""
    start, end = _bounds(year)
    received = RightsRequest.objects.filter(received_at__gte=start, received_at__lt=end).order_by()
    counts = {
        row["request_type"]: row
        for row in received.values("request_type").annotate(
            received=Count("id"),
            complied=Count("id", filter=Q(state=S.COMPLETED)),
            denied=Count("id", filter=Q(state=S.REJECTED)),
            other_closed=Count("id", filter=Q(state__in=OTHER_CLOSED_STATES)),
            still_open=Count("id", filter=Q(state__in=OPEN_STATES)),
        )
    }
    days = {}
    answered = received.filter(state__in=ANSWERED_STATES, closed_at__isnull=False)
    for request_type, received_at, closed_at in answered.values_list(
        "request_type", "received_at", "closed_at"
    ).iterator(chunk_size=2000):
        taken = (timezone.localdate(closed_at) - timezone.localdate(received_at)).days
        days.setdefault(request_type, []).append(taken)

    fields = ("received", "complied", "denied", "other_closed", "still_open")
    rows = []
    for request_type in RequestType:
        found = counts.get(request_type.value, {})
        median, mean = _days(days.get(request_type.value, []))
        rows.append(
            Row(
                request_type.value,
                str(request_type.label),
                *(found.get(name, 0) for name in fields),
                median,
                mean,
            )
        )
    median, mean = _days([value for values in days.values() for value in values])
    rows.append(
        Row(
            ALL_TYPES,
            str(_("All request types")),
            *(sum(getattr(row, name) for row in rows) for name in fields),
            median,
            mean,
        )
    )
    return rows


HEADER = (
    "year",
    "request_type",
    "received",
    "complied_with_in_whole_or_in_part",
    "denied",
    "other_closed",
    "still_open",
    "median_days_to_respond",
    "mean_days_to_respond",
)


def csv_text(year, rows=None):
    """The year's metrics as CSV text: one line per request type and a last ``all`` line."""
    rows = yearly(year) if rows is None else rows
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for row in rows:
        writer.writerow(
            (
                year,
                row.request_type,
                row.received,
                row.complied,
                row.denied,
                row.other_closed,
                row.still_open,
                "" if row.median_days is None else row.median_days,
                "" if row.mean_days is None else row.mean_days,
            )
        )
    return out.getvalue()
