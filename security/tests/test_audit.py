"""The audit of staff access: what is recorded, and that nobody can change or delete it."""

import csv
import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from dsr_requests import roles, services
from dsr_requests.models import IdentityCheck, IdentityDocument, RequestState, RequestType
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory, approved_request
from security.models import AccessAction, AccessEvent, AppendOnlyError

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
AUDIT_LIST = reverse("admin:security_accessevent_changelist")
AUDIT_CSV = reverse("admin:security_accessevent_export")


def change_url(obj):
    return reverse("admin:dsr_requests_rightsrequest_change", args=[obj.pk])


def events(action, **filters):
    return AccessEvent.objects.filter(action=action, **filters)


def request_with_document():
    rights_request = RightsRequestFactory(state=RequestState.VERIFYING)
    IdentityCheck.objects.create(request=rights_request, step="email", method="test", outcome="passed")
    document = services.add_identity_document(
        rights_request=rights_request, content=PDF, content_type="application/pdf"
    )
    return rights_request, document


# --- what is recorded ------------------------------------------------------------------------------


def test_each_view_of_a_requests_personal_data_is_recorded_without_the_data(client):
    reviewer = StaffUserFactory(roles=[roles.REVIEWER])
    client.force_login(reviewer)
    rights_request = RightsRequestFactory(name="Ada Lovelace")
    response = client.get(change_url(rights_request), HTTP_USER_AGENT="Firefox " + "x" * 500)
    assert "Ada Lovelace" in response.content.decode()
    event = events(AccessAction.VIEW_PERSONAL_DATA).get()
    assert (event.user, event.object_repr, event.object_id) == (
        reviewer,
        rights_request.reference,
        str(rights_request.pk),
    )
    assert event.content_type.model == "rightsrequest"
    assert event.ip == "127.0.0.1" and len(event.user_agent) == 200 and event.request_id
    values = " ".join(str(v) for v in AccessEvent.objects.values_list() for v in v)
    assert "Ada" not in values and rights_request.email not in values


def test_a_view_without_the_personal_data_permission_is_not_a_personal_data_view(client):
    auditor = StaffUserFactory()
    from django.contrib.auth.models import Permission

    auditor.user_permissions.add(Permission.objects.get(codename="view_rightsrequest"))
    client.force_login(auditor)
    rights_request = RightsRequestFactory()
    assert client.get(change_url(rights_request)).status_code == 200
    assert not events(AccessAction.VIEW_PERSONAL_DATA).exists()


def test_every_staff_action_is_recorded_done_or_refused(client):
    approver = StaffUserFactory(roles=[roles.APPROVER])
    client.force_login(approver)
    rights_request = RightsRequestFactory(state=RequestState.IN_REVIEW, email_confirmed_at=timezone.now())
    act = reverse("admin:dsr_requests_rightsrequest_act", args=[rights_request.pk, "approve"])
    client.post(act, {"expected_state": "in_review"})
    client.post(act, {"expected_state": "in_review"})  # now approved: refused
    recorded = list(
        events(AccessAction.TRANSITION, object_id=str(rights_request.pk)).values_list("detail", "succeeded")
    )
    assert sorted(recorded) == [("approve", False), ("approve", True)]


def test_bulk_actions_record_each_request(client):
    approver = StaffUserFactory(roles=[roles.APPROVER])
    client.force_login(approver)
    requests = [
        RightsRequestFactory(state=RequestState.IN_REVIEW, email_confirmed_at=timezone.now())
        for _ in range(3)
    ]
    response = client.post(
        reverse("admin:dsr_requests_rightsrequest_changelist"),
        {"action": "approve_selected", "_selected_action": [r.pk for r in requests]},
    )
    assert response.status_code == 302
    recorded = events(AccessAction.TRANSITION, detail="bulk approve_selected")
    assert sorted(recorded.values_list("object_repr", flat=True)) == sorted(r.reference for r in requests)


def test_staff_download_a_pending_identity_document_as_an_attachment_and_it_is_recorded(client):
    reviewer = StaffUserFactory(roles=[roles.REVIEWER])
    client.force_login(reviewer)
    rights_request, document = request_with_document()
    url = reverse("admin:dsr_requests_rightsrequest_document", args=[rights_request.pk, document.pk])
    assert url in client.get(change_url(rights_request)).content.decode()

    response = client.get(url)
    assert response.status_code == 200 and response.content == PDF
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == (
        f'attachment; filename="identity-document-{rights_request.reference}-{document.pk}.pdf"'
    )
    assert "no-store" in response["Cache-Control"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert "default-src 'none'" in response["Content-Security-Policy"]
    event = events(AccessAction.DOWNLOAD_DOCUMENT).get()
    assert event.user == reviewer and event.object_repr == rights_request.reference and event.succeeded

    # Once the decision is recorded the document is gone, and so is the download.
    act = reverse("admin:dsr_requests_rightsrequest_act", args=[rights_request.pk, "document_passed"])
    client.post(act, {"expected_state": "verifying", "text": "Passport matches the name."})
    assert not IdentityDocument.objects.exists()
    response = client.get(url)
    assert response.status_code == 302
    assert events(AccessAction.DOWNLOAD_DOCUMENT, succeeded=False).count() == 1


def test_staff_without_the_document_permission_cannot_download_it(client):
    from django.contrib.auth.models import Permission

    viewer = StaffUserFactory()
    viewer.user_permissions.add(Permission.objects.get(codename="view_rightsrequest"))
    client.force_login(viewer)
    rights_request, document = request_with_document()
    url = reverse("admin:dsr_requests_rightsrequest_document", args=[rights_request.pk, document.pk])
    assert url not in client.get(change_url(rights_request)).content.decode()
    response = client.get(url)
    assert response.status_code == 302 and PDF not in response.content
    assert events(AccessAction.DOWNLOAD_DOCUMENT, succeeded=False).count() == 1


def test_the_reviewer_role_holds_the_document_permission():
    from django.contrib.auth.models import Group

    for name in (roles.REVIEWER, roles.APPROVER, roles.PRIVACY_ADMIN):
        assert Group.objects.get(name=name).permissions.filter(codename="view_identity_document").exists()


def test_the_request_log_export_is_recorded(client):
    admin_user = StaffUserFactory(roles=[roles.PRIVACY_ADMIN])
    client.force_login(admin_user)
    response = client.get(reverse("admin:dsr_requests_rightsrequest_export"))
    b"".join(response.streaming_content)
    assert events(AccessAction.DOWNLOAD_EXPORT, detail="request log CSV", user=admin_user).count() == 1


def test_viewing_a_rectification_is_a_personal_data_view(client):
    approver = StaffUserFactory(roles=[roles.APPROVER, roles.PRIVACY_ADMIN])
    client.force_login(approver)
    rights_request, _token = approved_request(RequestType.CHANGE)
    correction = services.record_rectification(
        rights_request=rights_request,
        actor=approver,
        provider="rights_requests",
        field="name",
        new_value="Ada King",
    )
    response = client.get(reverse("admin:dsr_requests_rectification_change", args=[correction.pk]))
    assert response.status_code == 200 and "Ada King" in response.content.decode()
    assert events(AccessAction.VIEW_PERSONAL_DATA, object_repr=rights_request.reference).count() == 1


def test_logins_are_recorded(client):
    staff = StaffUserFactory()
    client.force_login(staff)
    assert events(AccessAction.LOGIN, user=staff).count() == 1


# --- append-only -----------------------------------------------------------------------------------


def make_event(**fields):
    return AccessEvent.objects.create(**{"action": AccessAction.LOGIN, "username": "someone", **fields})


def test_the_model_refuses_to_change_or_delete_an_event():
    event = make_event()
    event.detail = "rewritten"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AccessEvent.objects.filter(pk=event.pk).update(detail="rewritten")
    with pytest.raises(AppendOnlyError):
        AccessEvent.objects.all().delete()
    assert AccessEvent.objects.get(pk=event.pk).detail == ""


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE security_accessevent SET detail = 'rewritten'",
        "DELETE FROM security_accessevent",
    ],
)
def test_the_database_refuses_an_update_or_delete_in_sql(sql):
    make_event()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
    assert AccessEvent.objects.filter(detail="").count() == 1


def test_prune_deletes_only_events_older_than_the_retention(settings):
    settings.ACCESS_EVENT_RETENTION_DAYS = 730
    old = make_event(created_at=timezone.now() - timedelta(days=731))
    recent = make_event(created_at=timezone.now() - timedelta(days=729))
    out = io.StringIO()
    call_command("prune_access_events", stdout=out)
    assert "Deleted 1 " in out.getvalue()
    assert list(AccessEvent.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not AccessEvent.objects.filter(pk=old.pk).exists()
    # The window closed with the prune: a plain delete is refused again.
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM security_accessevent")


def test_the_admin_lists_and_filters_but_cannot_add_change_or_delete(client):
    privacy_admin = StaffUserFactory(roles=[roles.PRIVACY_ADMIN])
    client.force_login(privacy_admin)
    event = make_event(object_repr="DSR-ABC")
    response = client.get(AUDIT_LIST, {"action__exact": "login", "q": "DSR-ABC"})
    assert response.status_code == 200 and "DSR-ABC" in response.content.decode()
    assert "delete_selected" not in response.content.decode()
    change = reverse("admin:security_accessevent_change", args=[event.pk])
    assert client.get(change).status_code == 200
    assert client.post(change, {"detail": "rewritten"}).status_code == 403
    assert client.get(reverse("admin:security_accessevent_add")).status_code == 403
    assert (
        client.post(
            reverse("admin:security_accessevent_delete", args=[event.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert AccessEvent.objects.get(pk=event.pk).detail == ""


def test_reviewers_cannot_read_the_audit(client):
    client.force_login(StaffUserFactory(roles=[roles.REVIEWER]))
    assert client.get(AUDIT_LIST).status_code == 403
    assert client.get(AUDIT_CSV).status_code == 403


def test_the_csv_export_has_the_filtered_events_with_formula_safe_cells(client):
    privacy_admin = StaffUserFactory(roles=[roles.PRIVACY_ADMIN])
    client.force_login(privacy_admin)
    make_event(username='=HYPERLINK("http://evil")', object_repr="DSR-ONE")
    AccessEvent.objects.create(action=AccessAction.LOGOUT, username="other", object_repr="DSR-TWO")
    response = client.get(AUDIT_CSV, {"action__exact": "login"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="access-events-')
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    header, *body = rows
    assert header[:3] == ["when", "username", "action"]
    logins = [row for row in body if row[2] == "login"]
    assert [row[6] for row in body if row[6]] == ["DSR-ONE"], body
    assert any(row[1] == '\'=HYPERLINK("http://evil")' for row in logins)
    assert all(not row[1].startswith("=") for row in body)
    assert events(AccessAction.DOWNLOAD_EXPORT, detail="access events CSV").count() == 1


def test_set_audit_retention_says_it_needs_postgresql_on_sqlite():
    if connection.vendor == "postgresql":
        pytest.skip("on PostgreSQL the command works: test_audit_guard.py")
    with pytest.raises(CommandError, match="PostgreSQL only"):
        call_command("set_audit_retention")
