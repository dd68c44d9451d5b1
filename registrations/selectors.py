"""Reads for the admin: the usage chart."""

import datetime

from django.db.models import Sum
from django.utils import timezone

from registrations.models import UsageCount


def daily_usage(*, days=30, today=None):
    """Total uses per day for the last ``days`` days (oldest first, days without use as 0), one query."""
    today = today or timezone.localdate()
    start = today - datetime.timedelta(days=days - 1)
    totals = dict(
        UsageCount.objects.filter(day__gte=start, day__lte=today)
        .values_list("day")
        .annotate(total=Sum("count"))
        .order_by()
    )
    return [
        (start + datetime.timedelta(days=n), totals.get(start + datetime.timedelta(days=n), 0))
        for n in range(days)
    ]


def module_usage(*, days=30, today=None):
    """Total uses per module over the same window, most used first."""
    today = today or timezone.localdate()
    start = today - datetime.timedelta(days=days - 1)
    return list(
        UsageCount.objects.filter(day__gte=start, day__lte=today)
        .values("module")
        .annotate(total=Sum("count"))
        .order_by("-total", "module")
    )
