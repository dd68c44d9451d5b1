"""The staff list's orders and the indexes that serve them (issue 19: every list filter and order an index).

Kept apart from models.py, which declares ``LIST_ORDER_INDEXES`` on ``RightsRequest``; worklist.py orders
the list by the same expressions (``URGENT_DUE``), so that PostgreSQL matches the ORDER BY to the index.
Plain Django expressions over the request's columns: no model is imported here.
"""

from datetime import date

from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce

# The open states written out, so that the ordering expressions below are constants an expression index
# can be declared over (test_worklist checks they equal services.OPEN_STATES).
OPEN_STATE_VALUES = ("submitted", "verifying", "in_review", "approved", "fulfilling", "on_hold")
# The open states whose clock runs (selectors.RUNNING_STATES): the deadline filters' partial index.
RUNNING_STATE_VALUES = tuple(state for state in OPEN_STATE_VALUES if state != "on_hold")
# An open request with no due date yet sorts after every open request that has one (and before the closed).
NO_DUE_DATE = date(9999, 12, 31)
# The staff list's default order, most urgent first (worklist.URGENT_FIRST), is this one key, ascending,
# NULLs last, then newest received first: an open request's effective due date (the earlier of its two
# dates, a database constraint; NO_DUE_DATE when it has none yet), NULL for a closed one.
# One key rather than two (0 for open, 1 for closed, then the due date): PostgreSQL's statistics of a
# two-valued first key said that index followed the table's physical order, so the planner read a filtered
# list (state = completed) from the unfiltered index, skipping every open request (82,797 at 1,000,000)
# instead of reading the filter's own index. NULLs do not count in those statistics (issue 19).
URGENT_DUE = Case(
    When(state__in=OPEN_STATE_VALUES, then=Coalesce(F("effective_due_on"), Value(NO_DUE_DATE))),
    default=None,
    output_field=models.DateField(),
)

# The staff list's two orders as index keys: most urgent first (worklist.URGENT_FIRST, the default; an
# ascending key is NULLS LAST in PostgreSQL) and newest first (worklist.NEWEST_FIRST, read backwards).
# ``id`` ends both, as in the ORDER BY, so that the index gives the whole order and PostgreSQL need not
# sort even the rows received in the same instant.
URGENT_KEYS = (URGENT_DUE, F("received_at").desc(), F("id").desc())
NEWEST_KEYS = ("received_at", "id")
# Every filter of the list that is an equality on a column (the admin's list_filter, and AssigneeFilter's
# "assigned to me"), with the short name its indexes carry. "Unassigned" (IS NULL) gets partial indexes:
# PostgreSQL does not treat IS NULL as fixing a leading column's value, so it would sort after it.
LIST_FILTER_COLUMNS = {
    "state": "state",
    "request_type": "type",
    "regime": "regime",
    "channel": "channel",
    "assignee": "assignee",
}


def _list_order_indexes():
    """Each list order unfiltered, after each filter column, and over the unassigned requests.

    The deadline filters (overdue, due soon) select running requests by due date: in the urgent order
    those come first, so the urgent index's first entries are theirs. Newest first, no index can put them
    first (what is overdue changes every day): dsr_running_received_idx walks the running requests newest
    first and tests the due date inside the index (its third column), reading from the table only the
    page's rows, so the walk costs index entries, not table rows, and is bounded by the running requests.
    """
    indexes = [
        models.Index(*URGENT_KEYS, name="dsr_urgent_first_idx"),
        models.Index(fields=NEWEST_KEYS, name="dsr_received_at_idx"),
        models.Index(*URGENT_KEYS, condition=Q(assignee__isnull=True), name="dsr_unassigned_urgent_idx"),
        models.Index(
            fields=NEWEST_KEYS, condition=Q(assignee__isnull=True), name="dsr_unassigned_received_idx"
        ),
        models.Index(
            fields=[*NEWEST_KEYS, "effective_due_on"],
            condition=Q(state__in=RUNNING_STATE_VALUES),
            name="dsr_running_received_idx",
        ),
    ]
    for column, short in LIST_FILTER_COLUMNS.items():
        indexes.append(models.Index(F(column), *URGENT_KEYS, name=f"dsr_{short}_urgent_idx"))
        indexes.append(models.Index(fields=[column, *NEWEST_KEYS], name=f"dsr_{short}_received_idx"))
    return indexes


LIST_ORDER_INDEXES = _list_order_indexes()
