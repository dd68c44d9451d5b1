"""Atlassian account closure.

The account proof binds an Atlassian account ID to a request. registrations/personal_data.py reports
these IDs to Atlassian and, for an account Atlassian reports closed, calls the hook below; both are
registered in apps.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from dsr_requests import ledger
from dsr_requests.models import (
    RightsRequest,
)
from dsr_requests.services._base import _event, _lock
from dsr_requests.states import SYSTEM

if TYPE_CHECKING:
    from datetime import datetime

    from django.db.models import QuerySet

    from dsr_requests.states import Actor


def stored_atlassian_accounts() -> QuerySet[RightsRequest, tuple[str, datetime, str]]:
    """Each bound account ID with the site it was bound on and when its requests last changed.

    Rows of ``(account_id, updated_at, site_client_key)``, one per account and site. The request's
    ``updated_at`` is never earlier than the binding, so Atlassian is never told we saw an older profile
    than we did (and ``updated`` needs nothing from us anyway: no profile data is kept).
    """
    from django.db.models import Max  # kept here: this section is appended to the module

    return (
        RightsRequest.objects.exclude(account_id="")
        .values("account_id", "site_client_key")
        .annotate(last_updated=Max("updated_at"))
        .values_list("account_id", "last_updated", "site_client_key")
        .order_by()
    )


def erase_closed_atlassian_account(*, account_id: str, actor: Actor = SYSTEM) -> int:
    """Erase the data tied to an Atlassian account Atlassian reports closed; returns the requests changed.

    Only the account ID is tied to the account alone. The rest of a request (the requester's own name,
    email and answers, the site the proof came from, the record that the proof passed) belongs to the
    person who asked or to the site, and the request may still have to be answered; it stays. The
    event says what happened without repeating the ID.
    """
    erased = 0
    for pk in RightsRequest.objects.filter(account_id=account_id).values_list("pk", flat=True):
        with transaction.atomic():
            locked = _lock(pk)
            if locked.account_id != account_id:
                continue  # changed since the list was read
            locked.account_id = ""
            locked.save(update_fields=["account_id", "updated_at"])
            ledger.record_account_erasure(account_id=account_id, actor=actor)
            _event(locked, actor=actor, note=_("Atlassian account closed: account data erased"), public=False)
            erased += 1
    return erased
