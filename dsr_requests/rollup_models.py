"""The staff dashboard's rollup table, imported into ``models`` so that Django registers it with the app.

Kept apart from ``models.py`` by concern: only ``rollup.py`` writes it and only the dashboard reads it.
"""

from datetime import date

from django.db import models
from django.utils.translation import gettext_lazy as _


class RequestCount(models.Model):
    """The staff dashboard's counts, so it reads a few thousand rows at most instead of counting the
    requests table (issue 19: those counts grew with every request ever received). One table, so that a
    change of state updates it in one statement:

    - ``state``: requests now in the state ``key`` (``month`` is ``NOT_MONTHLY``);
    - ``received``: requests received in ``month`` (local time);
    - ``completed``: requests of type ``key`` completed in ``month``, taking ``days`` whole days.

    Written only by ``dsr_requests.rollup``: where a state change is recorded (``services._event``), in
    the same transaction, and by ``rollup.rebuild`` (the migration that created it, ``dsr_rollup``).
    """

    class Kind(models.TextChoices):
        STATE = "state", _("in a state")
        RECEIVED = "received", _("received")
        COMPLETED = "completed", _("completed")

    NOT_MONTHLY = date(1970, 1, 1)

    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    # The state (kind state), the request type (kind completed), or empty (kind received).
    key = models.CharField(_("state or type"), max_length=20, blank=True)
    month = models.DateField(_("month (its first day)"), default=NOT_MONTHLY)
    days = models.PositiveIntegerField(_("whole days taken"), default=0)
    count = models.BigIntegerField(_("requests"), default=0)

    class Meta:
        verbose_name = _("request count")
        verbose_name_plural = _("request counts")
        default_permissions = ()
        constraints = [
            models.UniqueConstraint(fields=["kind", "key", "month", "days"], name="dsr_request_count_key")
        ]

    def __str__(self):
        return f"{self.kind} {self.key} {self.month}: {self.count}"
