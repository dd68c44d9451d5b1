"""A paginator that stops counting at a cap, for admin lists over tables of millions of rows.

Django's admin counts every row that matches a list's filters to number its pages: on a table of a
million rights requests that count grew with the table whatever the page shown (issue 19). This one
counts at most ``CAP + 1`` rows (``SELECT COUNT(*) FROM (... LIMIT CAP + 1)``, read from the list's
index), so a page costs the same at any size; ``capped`` says the true number is larger, and the list's
pagination template then says "more than" rather than a number it does not know.
"""

from django.core.paginator import Paginator
from django.utils.functional import cached_property

CAP = 10_000


class CappedCountPaginator(Paginator):
    """``count`` is exact up to ``CAP``; above it, ``CAP + 1`` with ``capped`` true."""

    cap = CAP

    @cached_property
    def count(self):
        if hasattr(self.object_list, "query"):
            # Without the list's order: any index that serves the filter can count (a sliced count keeps
            # the ORDER BY, which made an overdue list sort every overdue request to count 10,001).
            return self.object_list.order_by()[: self.cap + 1].count()
        return min(len(self.object_list), self.cap + 1)

    @property
    def capped(self):
        """Whether more rows match than were counted."""
        return self.count > self.cap
