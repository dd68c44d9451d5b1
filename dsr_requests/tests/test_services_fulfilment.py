"""The fulfilment side of services.py: each request type carried out, resumed, retried, and erased for good.

Jobs run inline here (the immediate backend) when the start_fulfilment transaction commits; the same
jobs under a real ``db_worker`` process are in test_fulfilment_worker.py.
"""

import io
import json
import re
import zipfile
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
import time_machine
from django.apps import apps as django_apps
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from dsr_requests import exports, providers, roles, services
from dsr_requests.models import (
    Concerns,
    DataExport,
    FulfilmentRun,
    IdentityDocument,
    OutboundEmail,
    RequestState,
    RequestType,
    RightsRequest,
    RunStatus,
    TransferTo,
)
from dsr_requests.tests.conftest import export_folder
from dsr_requests.tests.factories import (
    ProcessingActivityFactory,
    RightsRequestFactory,
    StaffUserFactory,
    approved_request,
)
from registrations.tests.factories import RegistrationFactory

S = RequestState
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "dsr-export.schema.json").read_text())
pytestmark = pytest.mark.django_db


@pytest.fixture
def approver():
    return StaffUserFactory(roles=[roles.APPROVER])


@pytest.fixture
def register():
    return ProcessingActivityFactory(name="Answering privacy requests")


def fulfil(rights_request, actor, committed):
    """Start fulfilment and let the commit run the job inline; returns the request re-read."""
    with committed():
        services.start_fulfilment(rights_request=rights_request, actor=actor)
    return RightsRequest.objects.get(pk=rights_request.pk)


def plain_export(export):
    return b"".join(exports.iter_plain(exports.open_export(export.file_name)))


def emails_of(event):
    return [m for m in mail.outbox if OutboundEmail.objects.filter(event=event, subject=m.subject).exists()]


# --- copy / review -----------------------------------------------------------------------------------


@pytest.mark.parametrize("request_type", [RequestType.COPY, RequestType.REVIEW])
def test_copy_builds_an_encrypted_zip_with_readme_json_and_a_csv_per_provider(
    request_type, approver, register, committed
):
    earlier = RightsRequestFactory(email="ada@example.org", name="Ada Lovelace", details="Earlier question")
    rights_request, _token = approved_request(request_type, approver=approver, email="ada@example.org")

    done = fulfil(rights_request, approver, committed)

    assert done.state == S.COMPLETED
    export = DataExport.objects.get(request=done)
    stored = (export_folder() / export.file_name).read_bytes()
    assert stored.startswith(exports.HEADER)
    assert not zipfile.is_zipfile(io.BytesIO(stored))
    assert b"ada@example.org" not in stored and b"README" not in stored
    archive = zipfile.ZipFile(io.BytesIO(plain_export(export)))
    assert sorted(archive.namelist()) == [
        "README.txt",
        "connect_registrations.csv",
        "data.json",
        "rights_requests.csv",
    ]
    readme = archive.read("README.txt").decode()
    assert "Answering privacy requests" in readme and register.legal_basis in readme
    assert "no personal data" in readme
    data = json.loads(archive.read("data.json"))
    jsonschema.validate(data, SCHEMA)
    by_key = {p["key"]: p for p in data["providers"]}
    references = {r["reference"] for r in by_key["rights_requests"]["records"]}
    assert references == {earlier.reference, done.reference}
    assert by_key["usage_counts"] == {**by_key["usage_counts"], "holds_personal_data": False, "records": []}
    assert by_key["connect_registrations"]["records"] == []  # not a site-scoped request
    csv_text = archive.read("rights_requests.csv").decode()
    assert csv_text.splitlines()[0].startswith("reference,request_type,state")
    assert "Earlier question" in csv_text
    assert export.records == 2
    assert len(emails_of("export_ready")) == 1


def test_site_scoped_export_holds_the_tenant_record_but_never_its_secret(approver, committed):
    tenant = RegistrationFactory()
    rights_request, _token = approved_request(
        RequestType.COPY,
        approver=approver,
        concerns=Concerns.SITE,
        site_client_key=tenant.client_key,
        verified_site_url=tenant.base_url,
        account_id="557058:abc",
    )
    export = DataExport.objects.get(request=fulfil(rights_request, approver, committed))
    content = plain_export(export)
    archive = zipfile.ZipFile(io.BytesIO(content))
    data = json.loads(archive.read("data.json"))
    jsonschema.validate(data, SCHEMA)
    (record,) = next(p for p in data["providers"] if p["key"] == "connect_registrations")["records"]
    assert record["client_key"] == tenant.client_key
    assert "shared_secret" not in record
    assert tenant.shared_secret.encode() not in archive.read("data.json")
    assert tenant.shared_secret.encode() not in archive.read("connect_registrations.csv")


def test_an_account_scoped_request_does_not_get_a_site_record(approver, committed):
    tenant = RegistrationFactory()
    rights_request, _token = approved_request(
        RequestType.COPY, approver=approver, concerns=Concerns.ACCOUNT, site_client_key=tenant.client_key
    )
    assert providers.get("connect_registrations").find(services.subject_for(rights_request)) == 0


# --- transfer ----------------------------------------------------------------------------------------


def test_transfer_to_an_organisation_emails_it_a_one_time_link_to_schema_valid_json(
    approver, committed, client
):
    rights_request, _token = approved_request(
        RequestType.TRANSFER,
        approver=approver,
        transfer_to=TransferTo.ORGANISATION,
        transfer_email="dpo@receiver.example",
        name="Grace Hopper",
    )
    done = fulfil(rights_request, approver, committed)

    assert done.state == S.COMPLETED
    (message,) = [m for m in mail.outbox if "transferred" in m.subject]
    assert message.to == ["dpo@receiver.example"]
    assert "Grace Hopper" not in message.body  # no greeting by the requester's name to a third party
    path = re.search(r"https?://[^/\s]+(/requests/transfer/[0-9a-f]+/)", message.body).group(1)
    assert client.get(path).status_code == 200
    response = client.post(path)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    data = json.loads(b"".join(response.streaming_content))
    jsonschema.validate(data, SCHEMA)
    assert client.post(path).status_code == 404  # one time only
    export = DataExport.objects.get(request=done, kind="json")
    assert export.link_used_at is not None and export.downloads.count() == 1
    assert done.events.filter(note__icontains="receiving organisation").exists()
    # The requester is told too, without the link (only the organisation gets that).
    (told,) = [m for m in mail.outbox if m.to == [rights_request.email] and "complete" in m.body]
    assert "organisation you named" in told.body and "/requests/transfer/" not in told.body


def test_transfer_to_the_requester_sends_the_link_to_them(approver, committed):
    rights_request, _token = approved_request(
        RequestType.TRANSFER, approver=approver, transfer_to=TransferTo.REQUESTER, email="me@example.org"
    )
    fulfil(rights_request, approver, committed)
    (message,) = [m for m in mail.outbox if "transferred" in m.subject]
    assert message.to == ["me@example.org"]


def test_an_expired_transfer_link_is_refused(approver, committed, client):
    rights_request, _token = approved_request(
        RequestType.TRANSFER, approver=approver, transfer_to="requester"
    )
    fulfil(rights_request, approver, committed)
    (message,) = [m for m in mail.outbox if "transferred" in m.subject]
    path = re.search(r"(/requests/transfer/[0-9a-f]+/)", message.body).group(1)
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        response = client.post(path)
    assert response.status_code == 404
    assert "expired" in response.content.decode()


def test_a_transfer_link_whose_file_is_lost_is_a_404_and_stays_unused(approver, committed, client):
    rights_request, _token = approved_request(
        RequestType.TRANSFER, approver=approver, transfer_to="requester"
    )
    done = fulfil(rights_request, approver, committed)
    (message,) = [m for m in mail.outbox if "transferred" in m.subject]
    path = re.search(r"(/requests/transfer/[0-9a-f]+/)", message.body).group(1)
    export = DataExport.objects.get(request=done, kind="json")
    (export_folder() / export.file_name).unlink()

    response = client.post(path)
    assert response.status_code == 404 and "no longer available" in response.content.decode()
    export.refresh_from_db()
    assert export.link_used_at is None and export.downloads.count() == 0


# --- processing and change ---------------------------------------------------------------------------


def test_processing_answer_is_generated_from_the_register(approver, committed):
    ProcessingActivityFactory(name="Connect registrations", legal_basis="Contract (Art. 6(1)(b))")
    rights_request, _token = approved_request(RequestType.PROCESSING, approver=approver)
    assert fulfil(rights_request, approver, committed).state == S.COMPLETED
    (message,) = [m for m in mail.outbox if "how we process" in m.subject]
    assert "Connect registrations" in message.body and "Contract (Art. 6(1)(b))" in message.body
    assert "Automated decision-making: none" in message.body  # Art. 15(1)(h), said even when none
    assert "complain to your data protection authority" in message.body  # Art. 15(1)(f)
    html = message.alternatives[0][0]
    assert "Connect registrations" in html


def test_change_applies_the_recorded_correction_and_tells_the_requester(approver, committed):
    earlier = RightsRequestFactory(email="ada@example.org", name="Ada Byron")
    rights_request, _token = approved_request(
        RequestType.CHANGE, approver=approver, email="ada@example.org", name="Ada Byron"
    )
    services.record_rectification(
        rights_request=rights_request,
        actor=approver,
        provider="rights_requests",
        field="name",
        new_value="Ada Lovelace",
    )
    done = fulfil(rights_request, approver, committed)

    assert done.state == S.COMPLETED
    assert done.name == "Ada Lovelace"
    assert RightsRequest.objects.get(pk=earlier.pk).name == "Ada Lovelace"
    (message,) = [m for m in mail.outbox if "corrected" in m.subject]
    assert "name → Ada Lovelace" in message.body
    assert done.rectifications.get().applied_at is not None


def test_a_correction_of_a_field_the_provider_cannot_change_is_refused(approver):
    rights_request, _token = approved_request(RequestType.CHANGE, approver=approver)
    with pytest.raises(services.ActionRefused):
        services.record_rectification(
            rights_request=rights_request,
            actor=approver,
            provider="rights_requests",
            field="email",
            new_value="x@example.org",
        )
    with pytest.raises(services.ActionRefused):
        services.record_rectification(
            rights_request=rights_request,
            actor=approver,
            provider="usage_counts",
            field="name",
            new_value="x",
        )


def test_a_reviewer_cannot_record_a_correction():
    rights_request, _token = approved_request(RequestType.CHANGE)
    reviewer = StaffUserFactory(roles=[roles.REVIEWER])
    with pytest.raises(PermissionDenied):
        services.record_rectification(
            rights_request=rights_request,
            actor=reviewer,
            provider="rights_requests",
            field="name",
            new_value="X",
        )


# --- delete: four eyes, receipt, tombstone -----------------------------------------------------------


def test_the_first_approver_cannot_give_the_second_approval(approver):
    rights_request, _token = approved_request(RequestType.DELETE, approver=approver)
    with pytest.raises(services.ActionRefused):
        services.approve_erasure(rights_request=rights_request, actor=approver)
    with pytest.raises(services.ActionRefused):
        services.start_fulfilment(rights_request=rights_request, actor=approver)


def test_a_reviewer_cannot_give_the_second_approval(approver):
    rights_request, _token = approved_request(RequestType.DELETE, approver=approver)
    with pytest.raises(PermissionDenied):
        services.approve_erasure(
            rights_request=rights_request, actor=StaffUserFactory(roles=[roles.REVIEWER])
        )


def test_the_database_refuses_one_person_as_both_approvers(approver):
    rights_request, _token = approved_request(RequestType.DELETE, approver=approver)
    rights_request.erasure_approved_by = approver
    with pytest.raises(IntegrityError), transaction.atomic():
        rights_request.save(update_fields=["erasure_approved_by"])


def all_rows_text():
    """Every row of every model, values decrypted by the ORM, as one string (the 'database dump')."""
    parts = []
    for model in django_apps.get_models(include_auto_created=True):
        for row in model.objects.all().values_list():
            parts.append(repr(row))
    return "\n".join(parts)


def raw_dump_text():
    """Every table read with plain SQL (ciphertext stays ciphertext), as one string."""
    from django.db import connection

    parts = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - names from introspection
            parts.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(parts)


def test_erasure_leaves_a_tombstone_and_the_person_is_gone_from_every_table(approver, committed, register):
    email, name = "erase.me@example.org", "Zebedee Quartermaine"
    tenant = RegistrationFactory(state="uninstalled")
    earlier = RightsRequestFactory(email=email, name=name, details=f"I am {name}", state=S.COMPLETED)
    services.queue_requester_email(rights_request=earlier, event="withdrawn")
    still_open = RightsRequestFactory(email=email, name=name, state=S.IN_REVIEW)
    rights_request, _token = approved_request(
        RequestType.DELETE,
        approver=approver,
        email=email,
        name=name,
        details=f"Please delete everything about {name}",
        concerns=Concerns.SITE,
        site_client_key=tenant.client_key,
        verified_site_url=tenant.base_url,
        account_id="557058:zebedee",
    )
    IdentityDocument.objects.create(request=rights_request, content="AAAA", content_type="image/png", size=3)
    services._event(rights_request, actor=approver, note=f"Phoned {name}", public=False)
    second = StaffUserFactory(roles=[roles.APPROVER])
    services.approve_erasure(rights_request=rights_request, actor=second)
    assert email in all_rows_text() and name in all_rows_text()

    done = fulfil(rights_request, approver, committed)

    assert done.state == S.COMPLETED
    assert done.erased_at is not None
    assert (done.reference, done.request_type, done.email_hash) == (
        rights_request.reference,
        RequestType.DELETE,
        rights_request.email_hash,
    )
    assert done.received_at and done.closed_at
    (receipt,) = [m for m in mail.outbox if "receipt" in m.subject]
    assert receipt.to == [email]
    assert "earlier requests (kept as tombstones): 1" in receipt.body
    assert "installation records: 1" in receipt.body
    # Approvers are named, but never by their login (often an email address).
    assert f"Privacy team member no. {approver.pk}" in receipt.body
    assert f"Privacy team member no. {second.pk}" in receipt.body
    assert approver.username not in receipt.body and approver.email not in receipt.body
    assert "Atlassian" in receipt.body
    # The person's other, still open request is not ended behind their back: kept, and said so.
    assert still_open.reference in receipt.body
    still_open.delete()
    dump = all_rows_text()
    assert email not in dump and name not in dump
    assert "zebedee" not in dump.lower()
    raw = raw_dump_text()
    assert email not in raw and name not in raw
    assert not RightsRequest.objects.get(pk=earlier.pk).name
    assert not IdentityDocument.objects.exists()


def test_erasure_keeps_an_installed_sites_record_and_says_why(approver, committed):
    tenant = RegistrationFactory(state="enabled")
    rights_request, _token = approved_request(
        RequestType.DELETE,
        approver=approver,
        concerns=Concerns.SITE,
        site_client_key=tenant.client_key,
        verified_site_url=tenant.base_url,
    )
    services.approve_erasure(rights_request=rights_request, actor=StaffUserFactory(roles=[roles.APPROVER]))
    fulfil(rights_request, approver, committed)
    (receipt,) = [m for m in mail.outbox if "receipt" in m.subject]
    assert "is kept while our app is installed" in receipt.body
    assert tenant.__class__.objects.filter(pk=tenant.pk).exists()


# --- idempotent, resumable, and back to staff after three failures ----------------------------------


class FlakyProvider(providers.Provider):
    """Fails its first ``failures`` erasures, counting every call."""

    key = "flaky"
    title = "Flaky"

    def __init__(self, failures):
        self.failures = failures
        self.calls = 0

    def erase(self, subject):
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("storage unavailable for someone@example.org")
        return providers.Erasure(erased={"things": 1})


@pytest.fixture
def flaky(monkeypatch):
    def install(failures):
        provider = FlakyProvider(failures)
        monkeypatch.setitem(providers._registry, provider.key, provider)
        return provider

    return install


def _approved_deletion(approver):
    rights_request, _token = approved_request(RequestType.DELETE, approver=approver)
    services.approve_erasure(rights_request=rights_request, actor=StaffUserFactory(roles=[roles.APPROVER]))
    return rights_request


def test_a_retry_skips_the_steps_already_done(approver, committed, flaky):
    provider = flaky(failures=1)
    counting = providers.get("rights_requests")
    done = fulfil(_approved_deletion(approver), approver, committed)

    assert done.state == S.COMPLETED
    run = FulfilmentRun.objects.get(request=done)
    assert (run.attempts, run.failures, provider.calls) == (2, 1, 2)
    assert run.steps["erase:rights_requests"]["done_at"] < run.steps["erase:flaky"]["done_at"]
    assert counting.key in {step.partition(":")[2] for step in run.steps}
    (receipt,) = [m for m in mail.outbox if "receipt" in m.subject]
    assert "Your Atlassian site's installation record" in receipt.body
    assert "held nothing about you" in receipt.body  # not a site-scoped request


def test_three_failures_put_the_request_back_to_staff_with_the_error(approver, committed, flaky):
    flaky(failures=10)
    back = fulfil(_approved_deletion(approver), approver, committed)

    assert back.state == S.APPROVED
    run = FulfilmentRun.objects.get(request=back)
    assert (run.status, run.failures) == (RunStatus.FAILED, 3)
    event = back.events.latest("id")
    assert (event.from_state, event.to_state, event.public) == (S.FULFILLING, S.APPROVED, False)
    assert "storage unavailable" in event.note
    # The error text is shown to staff, but an address it quoted is masked like in the logs.
    assert "someone@example.org" not in event.note + run.last_error
    assert not [m for m in mail.outbox if "receipt" in m.subject]


def test_staff_can_start_a_failed_fulfilment_again(approver, committed, flaky):
    provider = flaky(failures=3)
    back = fulfil(_approved_deletion(approver), approver, committed)
    assert back.state == S.APPROVED
    assert fulfil(back, approver, committed).state == S.COMPLETED
    assert provider.calls == 4


def test_running_the_job_again_after_completion_changes_nothing(approver, committed):
    rights_request, _token = approved_request(RequestType.COPY, approver=approver)
    done = fulfil(rights_request, approver, committed)
    emails_before, events_before = OutboundEmail.objects.count(), done.events.count()
    assert services.run_fulfilment(request_id=done.pk) == services.RUN_SKIPPED
    assert (OutboundEmail.objects.count(), done.events.count()) == (emails_before, events_before)


def test_a_run_interrupted_after_the_export_finishes_without_a_second_file(approver, committed):
    rights_request, _token = approved_request(RequestType.COPY, approver=approver)
    with committed():
        services.start_fulfilment(rights_request=rights_request, actor=approver)
    run = FulfilmentRun.objects.get(request=rights_request)
    assert run.status == RunStatus.DONE
    export = DataExport.objects.get(request=rights_request)
    # Simulate a crash after the export step: forget the later steps, rerun.
    run.steps = {"export_zip": run.steps["export_zip"]}
    run.status = RunStatus.RUNNING
    run.heartbeat_at = timezone.now() - timedelta(hours=1)  # the dead worker's last sign of life
    run.save()
    RightsRequest.objects.filter(pk=rights_request.pk).update(state=S.FULFILLING)
    mail.outbox.clear()
    with committed():
        assert services.run_fulfilment(request_id=rights_request.pk) == services.RUN_DONE
    assert DataExport.objects.filter(request=rights_request).get().pk == export.pk
    assert sorted(p.name for p in export_folder().iterdir()) == [export.file_name]
    assert len(mail.outbox) == 1


def test_stalled_runs_are_queued_again(approver, committed, flaky):
    rights_request, _token = approved_request(RequestType.COPY, approver=approver)
    with transaction.atomic():  # no commit callbacks: the job never runs, as if the worker died
        services.start_fulfilment(rights_request=rights_request, actor=approver)
    FulfilmentRun.objects.filter(request=rights_request).update(
        heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    assert services.resume_stalled_fulfilment() == [rights_request.reference]
    assert RightsRequest.objects.get(pk=rights_request.pk).state == S.COMPLETED
