"""Fulfilment corrections: checking and recording a rectification carried out through a provider."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from artemis_portal import providers
from dsr_requests.models import (
    RequestType,
)
from dsr_requests.services._base import ActionRefused, _event, _lock, _require, _required_text
from dsr_requests.states import S

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from dsr_requests.models import Rectification, RightsRequest


def check_rectification(*, rights_request: RightsRequest, provider: str, field: str) -> None:
    """Refuse (ActionRefused) a correction the request or the provider cannot take; the form uses it too."""
    if rights_request.request_type != RequestType.CHANGE or rights_request.state not in (
        S.IN_REVIEW,
        S.APPROVED,
    ):
        raise ActionRefused(_("Corrections are recorded on a change request in review or approved."))
    try:
        target = providers.get(provider)
    except KeyError:
        raise ActionRefused(_("Unknown data source.")) from None
    if field not in target.rectifiable_fields:
        raise ActionRefused(
            _("%(source)s can correct only: %(fields)s.")
            % {"source": target.title, "fields": ", ".join(target.rectifiable_fields) or "-"}
        )


@transaction.atomic
def record_rectification(
    *, rights_request: RightsRequest, actor: User, provider: str, field: str, new_value: str
) -> Rectification:
    """Record a correction for a change request, applied by the provider when the request is fulfilled."""
    from dsr_requests.models import Rectification

    _require(actor, "fulfil_request")
    locked = _lock(rights_request)
    check_rectification(rights_request=locked, provider=provider, field=field)
    new_value = _required_text(new_value, _("Give the corrected value."))
    correction, _created = Rectification.objects.update_or_create(
        request=locked,
        provider=provider,
        field=field,
        defaults={"new_value": new_value, "recorded_by": actor, "applied_at": None},
    )
    _event(locked, actor=actor, note=_("Correction recorded: %(field)s") % {"field": field}, public=False)
    return correction
