"""Every first page of the staff list, in each order and with each filter the page offers, is read from an
index in the list's order, never sorted (issue 19: at a million requests a sort of every match is the cost).

The queries are the page's own: built by the admin's ChangeList from the filter links it shows, so a new
filter, a new order or a changed index that loses this fails here. PostgreSQL only: the plans are its.
Sorting and sequential scans are switched off for the transaction, so that on a table of a few rows the
planner still shows what the indexes allow; a Sort node left in the plan means no index gives the order.
"""

import json
from datetime import date, timedelta

import pytest
from django.contrib import admin
from django.db import connection
from django.http import QueryDict
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from dsr_requests import selectors
from dsr_requests.list_order import RUNNING_STATE_VALUES
from dsr_requests.models import RequestState, RequestType, RightsRequest
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory

pytestmark = pytest.mark.django_db
S = RequestState
LIST_URL = reverse("admin:dsr_requests_rightsrequest_changelist")
TABLE = RightsRequest._meta.db_table
ORDER = "order"
# The indexes of the unfiltered orders: without them, each filter must still have its own.
UNFILTERED_ORDER_INDEXES = ("dsr_urgent_first_idx", "dsr_received_at_idx")


def _changelist(user, params):
    request = RequestFactory().get(LIST_URL, params)
    request.user = user
    return admin.site._registry[RightsRequest].get_changelist_instance(request)


def _offered(user):
    """The filters and orders the list page offers, as the query parameters of its links."""
    changelist = _changelist(user, {})
    filters, orders = [], [{}]
    for spec in changelist.filter_specs:
        for choice in spec.choices(changelist):
            params = {key: value for key, value in QueryDict(choice["query_string"].lstrip("?")).items()}
            if not params:
                continue
            (orders if set(params) == {ORDER} else filters).append(params)
    return filters, orders


def _plan_nodes(queryset):
    """Every node of the first page's plan (the page's 50 rows, as the paginator slices them)."""
    plan = json.loads(queryset[:50].explain(format="json"))[0]["Plan"]
    stack = [plan]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.get("Plans", []))


def _unsorted_index_read(nodes):
    nodes = list(nodes)
    sorts = [node["Node Type"] for node in nodes if "Sort" in node["Node Type"]]
    scans = {node["Node Type"] for node in nodes if node.get("Relation Name") == TABLE}
    return not sorts and scans <= {"Index Scan", "Index Only Scan"}


@pytest.fixture
def staff_and_requests():
    user = StaffUserFactory(roles=["Reviewer"])
    now = timezone.now()
    for number, state in enumerate(
        [S.SUBMITTED, S.IN_REVIEW, S.ON_HOLD, S.COMPLETED, S.REJECTED, S.WITHDRAWN]
    ):
        RightsRequestFactory(
            state=state,
            request_type=RequestType.values[number % len(RequestType.values)],
            received_at=now - timedelta(days=number * 20),
            assignee=user if number % 2 else None,
            held_from_state=S.IN_REVIEW if state == S.ON_HOLD else "",
            rejection_reason="Not proven." if state == S.REJECTED else "",
        )
    return user


@pytest.fixture
def planner(staff_and_requests):
    """The staff user, on a few requests, with sorts and sequential scans off for the transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
    return staff_and_requests


def test_the_deadline_filters_partial_index_covers_exactly_the_running_states():
    assert set(RUNNING_STATE_VALUES) == set(selectors.RUNNING_STATES)


def test_the_page_offers_both_orders_and_every_filter_the_indexes_were_made_for(staff_and_requests):
    filters, orders = _offered(staff_and_requests)
    assert orders == [{}, {ORDER: "newest"}]
    offered = {key for params in filters for key in params}
    assert offered == {
        "state__exact",
        "request_type__exact",
        "regime__exact",
        "channel__exact",
        "due",
        "assigned",
    }


@pytest.mark.postgres_only
def test_every_order_and_filter_reads_its_first_page_from_an_index_without_sorting(planner):
    filters, orders = _offered(planner)
    for order in orders:
        for params in [{}, *filters]:
            queryset = _changelist(planner, {**params, **order}).queryset
            assert _unsorted_index_read(_plan_nodes(queryset)), (params, order, queryset.explain())


@pytest.mark.postgres_only
def test_each_filter_has_an_index_of_its_own_in_each_order(planner):
    """Without the unfiltered orders' indexes, a filtered page still needs no sort: the filter's own index
    serves it (read from the unfiltered index, a filter would skip every row of the other values first).
    The deadline filters in the urgent order are the exception by design: the running requests by due date
    are the first entries of the urgent index itself (see list_order._list_order_indexes)."""
    filters, orders = _offered(planner)
    with connection.cursor() as cursor:
        for name in UNFILTERED_ORDER_INDEXES:
            cursor.execute(f"DROP INDEX {name}")  # rolled back with the test's transaction
    for order in orders:
        for params in filters:
            if "due" in params and not order:
                continue
            queryset = _changelist(planner, {**params, **order}).queryset
            assert _unsorted_index_read(_plan_nodes(queryset)), (params, order, queryset.explain())


def test_the_urgent_order_is_open_by_due_date_then_without_one_then_closed_newest_first(staff_and_requests):
    """The one-key urgent order (list_order.URGENT_DUE) sorts as the two keys it replaced did."""
    RightsRequest.objects.all().delete()
    now = timezone.now()
    no_date = RightsRequestFactory(state=S.SUBMITTED, received_at=now)
    RightsRequest.objects.filter(pk=no_date.pk).update(
        policy_due_on=None, statutory_due_on=None, effective_due_on=None
    )
    later = RightsRequestFactory(state=S.IN_REVIEW, received_at=now - timedelta(days=1))
    sooner = RightsRequestFactory(state=S.IN_REVIEW, received_at=now - timedelta(days=9))
    closed_new = RightsRequestFactory(state=S.COMPLETED, received_at=now - timedelta(days=2))
    closed_old = RightsRequestFactory(state=S.WITHDRAWN, received_at=now - timedelta(days=3))
    assert sooner.effective_due_on < later.effective_due_on < date.max
    listed = list(_changelist(staff_and_requests, {}).queryset.values_list("pk", flat=True))
    assert listed == [r.pk for r in (sooner, later, no_date, closed_new, closed_old)]
