"""The dsr_resume_fulfilment command queues again the fulfilments whose worker died."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from dsr_requests import roles, services
from dsr_requests.models import FulfilmentRun, RequestState, RequestType, RightsRequest
from dsr_requests.tests.factories import StaffUserFactory, approved_request

pytestmark = pytest.mark.django_db


def test_a_stalled_fulfilment_is_queued_again_and_a_fresh_one_is_left_alone():
    approver = StaffUserFactory(roles=[roles.APPROVER])
    stalled, _token = approved_request(RequestType.PROCESSING, approver=approver)
    busy, _token = approved_request(RequestType.PROCESSING, approver=approver)
    with transaction.atomic():  # no commit callbacks: the jobs are never queued, as if the worker died
        services.start_fulfilment(rights_request=stalled, actor=approver)
        services.start_fulfilment(rights_request=busy, actor=approver)
    FulfilmentRun.objects.filter(request=stalled).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    FulfilmentRun.objects.filter(request=busy).update(heartbeat_at=timezone.now())
    out = io.StringIO()
    call_command("dsr_resume_fulfilment", stdout=out)
    assert out.getvalue().strip() == f"queued again: 1 fulfilment(s) {stalled.reference}"
    assert RightsRequest.objects.get(pk=stalled.pk).state == RequestState.COMPLETED
    assert RightsRequest.objects.get(pk=busy.pk).state == RequestState.FULFILLING
