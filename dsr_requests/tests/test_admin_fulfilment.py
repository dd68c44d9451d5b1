"""Fulfilment in the admin: the processing register (privacy admin), corrections, runs and exports."""

import pytest
from django.urls import reverse

from dsr_requests import roles, services
from dsr_requests.models import ProcessingActivity, Rectification, RequestState, RequestType
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory, approved_request

pytestmark = pytest.mark.django_db
REGISTER_ADD = reverse("admin:dsr_requests_processingactivity_add")


def logged_in(client, *role_names):
    user = StaffUserFactory(roles=list(role_names))
    client.force_login(user)
    return user


def test_the_privacy_admin_keeps_the_processing_register(client):
    logged_in(client, roles.PRIVACY_ADMIN)
    response = client.post(
        REGISTER_ADD,
        {
            "name": "Connect registrations",
            "purposes": "Serving the app",
            "data_categories": "Site URL, client key",
            "legal_basis": "Contract",
            "recipients": "",
            "retention": "While installed",
            "source": "Atlassian",
            "transfers": "",
            "position": 1,
        },
    )
    assert response.status_code == 302
    assert ProcessingActivity.objects.get(name="Connect registrations").legal_basis == "Contract"


@pytest.mark.parametrize("role", [roles.REVIEWER, roles.APPROVER])
def test_other_roles_cannot_change_the_register(client, role):
    logged_in(client, role)
    assert client.get(REGISTER_ADD).status_code == 403


def test_an_approver_records_a_correction_through_the_service(client):
    approver = logged_in(client, roles.APPROVER)
    rights_request, _token = approved_request(RequestType.CHANGE, approver=approver)
    response = client.post(
        reverse("admin:dsr_requests_rectification_add"),
        {"request": rights_request.pk, "source_field": "rights_requests:name", "new_value": "New Name"},
    )
    assert response.status_code == 302
    correction = Rectification.objects.get()
    assert (correction.field, correction.new_value, correction.recorded_by) == ("name", "New Name", approver)
    assert rights_request.events.filter(note="Correction recorded: name").exists()


def test_runs_and_exports_are_listed_read_only_without_file_content(client, committed):
    admin = logged_in(client, roles.PRIVACY_ADMIN)
    rights_request, _token = approved_request(RequestType.COPY, email="listed@example.org")
    with committed():
        services.start_fulfilment(rights_request=rights_request, actor=admin)
    runs = client.get(reverse("admin:dsr_requests_fulfilmentrun_changelist"))
    exports_page = client.get(reverse("admin:dsr_requests_dataexport_changelist"))
    assert rights_request.reference in runs.content.decode()
    assert rights_request.reference in exports_page.content.decode()
    assert b"listed@example.org" not in runs.content + exports_page.content
    assert client.get(reverse("admin:dsr_requests_dataexport_add")).status_code == 403


def test_the_request_page_shows_where_its_fulfilment_job_stands(client):
    from dsr_requests.models import FulfilmentRun

    client.force_login(StaffUserFactory(roles=[roles.APPROVER]))
    rights_request = RightsRequestFactory(state=RequestState.FULFILLING, request_type="copy")
    run = FulfilmentRun.objects.create(
        request=rights_request,
        status=FulfilmentRun.Status.RUNNING,
        steps={"export_zip": {"done_at": "2026-11-28T10:00:00+00:00"}},
        attempts=2,
        failures=1,
        last_error="OSError: disk full",
    )
    body = client.get(
        reverse("admin:dsr_requests_rightsrequest_change", args=[rights_request.pk])
    ).content.decode()
    assert "1 of 3 steps done; attempt 2, 1 failed" in body
    assert "Last error: OSError: disk full" in body
    assert reverse("admin:dsr_requests_fulfilmentrun_change", args=[run.pk]) in body
