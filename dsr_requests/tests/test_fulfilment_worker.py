"""Fulfilment under a real ``python manage.py db_worker`` process on PostgreSQL, emails through real SMTP.

The test enqueues to the database backend, starts the worker as a subprocess on the test database,
waits for the outcome, and stops the worker. One test kills the worker halfway through an export
(SIGKILL, as a crash or an OOM kill would) and checks that the next worker finishes the job without a
second file, email or export row.
"""

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from dsr_requests import roles, services, tokens
from dsr_requests.models import (
    DataExport,
    FulfilmentRun,
    ProcessingActivity,
    RequestState,
    RequestType,
    RightsRequest,
    TransferTo,
)
from dsr_requests.tests.factories import StaffUserFactory, approved_request
from dsr_requests.tests.test_services_fulfilment import all_rows_text

S = RequestState
CODE_RE = re.compile(r"download code is \*?\*?([0-9A-Z]{8})")
ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def smtp(smtp_server):
    """The root conftest's real SMTP server on loopback; the workers send to it through EMAIL_URL."""
    return smtp_server


@pytest.fixture
def database_queue(settings, tmp_path):
    """This process enqueues to the database backend, as production does; the roles exist."""
    roles.sync_role_groups(django_apps)  # an earlier transactional test's flush may have removed them
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    settings.DSR_FULFILMENT_STALE_MINUTES = 0


@pytest.fixture
def worker(smtp, settings, tmp_path):
    """Start ``db_worker`` processes on the test database (``start(VARIABLE="value")`` changes their
    environment); every one started is stopped at the end."""
    started = []
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "TASKS_BACKEND": "database",
        "EXPORT_DIR": str(settings.EXPORT_DIR),
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}",
        "DSR_FULFILMENT_STALE_MINUTES": "0",
        "DSR_FULFILMENT_RETRY_SECONDS": "0",
        "APP_BASE_URL": settings.APP_BASE_URL,
    }

    def start(**overrides):
        log = open(tmp_path / f"worker{len(started)}.log", "w")  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "db_worker",
                "--interval",
                "0.2",
                "--no-startup-delay",
                "--no-reload",
            ],
            cwd=ROOT,
            env={**env, **overrides},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def wait_for(condition, *, timeout=90, what="condition", every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def state_of(rights_request):
    return RightsRequest.objects.values_list("state", flat=True).get(pk=rights_request.pk)


def test_every_request_type_is_fulfilled_by_a_real_worker(database_queue, worker, smtp):
    ProcessingActivity.objects.create(
        name="Rights requests",
        purposes="Answering privacy requests",
        data_categories="Name, email",
        legal_basis="Legal obligation",
        retention="24 months",
    )
    approver = StaffUserFactory(roles=[roles.APPROVER])
    second = StaffUserFactory(roles=[roles.APPROVER])
    made = {}
    for request_type in RequestType:
        extra = {}
        if request_type == RequestType.TRANSFER:
            extra = {"transfer_to": TransferTo.ORGANISATION, "transfer_email": "dpo@receiver.example"}
        made[request_type], _token = approved_request(
            request_type,
            approver=approver,
            email=f"{request_type}@example.org",
            name=f"Person {request_type.capitalize()}",
            **extra,
        )
    services.record_rectification(
        rights_request=made[RequestType.CHANGE],
        actor=approver,
        provider="rights_requests",
        field="name",
        new_value="Corrected",
    )
    services.approve_erasure(rights_request=made[RequestType.DELETE], actor=second)
    for rights_request in made.values():
        services.start_fulfilment(rights_request=rights_request, actor=approver)

    worker()
    for request_type, rights_request in made.items():
        wait_for(lambda r=rights_request: state_of(r) == S.COMPLETED, what=f"{request_type} to complete")
    wait_for(lambda: len(smtp.messages) >= 6, what="the six emails")

    recipients = {to[0] for to, _content in smtp.messages}
    assert {"copy@example.org", "review@example.org", "dpo@receiver.example"} <= recipients
    assert {"processing@example.org", "change@example.org", "delete@example.org"} <= recipients
    assert DataExport.objects.filter(kind="zip").count() == 2
    assert DataExport.objects.filter(kind="json").count() == 1
    assert RightsRequest.objects.get(pk=made[RequestType.CHANGE].pk).name == "Corrected"
    assert all(run.attempts == 1 for run in FulfilmentRun.objects.all())
    dump = all_rows_text()
    assert "delete@example.org" not in dump and "Person Delete" not in dump


def test_a_worker_killed_mid_export_leaves_the_request_fulfilling_and_the_next_one_finishes_it(
    database_queue, worker, smtp, settings
):
    email = "big.subject@example.org"
    email_hash = tokens.email_blind_index(email)
    now = timezone.now()
    # Many earlier requests of one person: an export that takes long enough to be killed halfway.
    RightsRequest.objects.bulk_create(
        RightsRequest(
            reference=f"DSR-K{number:05d}",
            request_type=RequestType.REVIEW,
            state=S.COMPLETED,
            name="Big Subject",
            email=email,
            email_hash=email_hash,
            details="An earlier request " * 20,
            received_at=now,
        )
        for number in range(20000)
    )
    approver = StaffUserFactory(roles=[roles.APPROVER])
    rights_request, _token = approved_request(RequestType.COPY, approver=approver, email=email)
    services.start_fulfilment(rights_request=rights_request, actor=approver)
    export_dir = Path(settings.EXPORT_DIR)
    partials = f".{rights_request.reference}-zip.export.*.partial"

    first = worker()
    wait_for(lambda: any(export_dir.glob(partials)), what="the export to start", every=0.005)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)

    assert state_of(rights_request) == S.FULFILLING
    assert not DataExport.objects.filter(request=rights_request).exists()
    assert not (export_dir / f"{rights_request.reference}-zip.export").exists()
    assert any(export_dir.glob(partials))  # the killed worker's temporary file, removed by the rerun
    assert not smtp.messages

    call_command("dsr_resume_fulfilment", verbosity=0)
    worker()
    wait_for(lambda: state_of(rights_request) == S.COMPLETED, timeout=180, what="the resumed export")
    wait_for(lambda: smtp.messages, what="the export email")
    time.sleep(1)  # a duplicate email, if there were one, would arrive now

    assert [p.name for p in export_dir.iterdir()] == [f"{rights_request.reference}-zip.export"]
    export = DataExport.objects.get(request=rights_request)
    assert export.records == 20001
    assert len(smtp.messages) == 1
    run = FulfilmentRun.objects.get(request=rights_request)
    assert run.attempts == 2


def test_a_job_failing_three_times_under_the_real_worker_goes_back_to_staff_and_staff_can_restart_it(
    database_queue, worker, smtp, tmp_path
):
    # A real fault, no mock: the export folder's parent is a file, so every attempt to write fails.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    approver = StaffUserFactory(roles=[roles.APPROVER])
    rights_request, _token = approved_request(RequestType.COPY, approver=approver)
    services.start_fulfilment(rights_request=rights_request, actor=approver)

    worker(EXPORT_DIR=str(blocker / "exports"))
    wait_for(lambda: state_of(rights_request) == S.APPROVED, what="the third failure to hand it back")

    run = FulfilmentRun.objects.get(request=rights_request)
    assert (run.status, run.attempts, run.failures) == ("failed", 3, 3)
    assert run.last_error.startswith(("NotADirectoryError", "FileExistsError"))
    event = RightsRequest.objects.get(pk=rights_request.pk).events.latest("id")
    assert "failed 3 times" in event.note and not event.public
    assert not smtp.messages and not DataExport.objects.exists()

    blocker.unlink()  # the fault is fixed; staff press Start fulfilment again
    services.start_fulfilment(rights_request=rights_request, actor=approver)
    wait_for(lambda: state_of(rights_request) == S.COMPLETED, what="the restarted job")
    wait_for(lambda: smtp.messages, what="the export email")
    assert DataExport.objects.filter(request=rights_request).count() == 1


def test_a_real_worker_writes_to_export_storage_and_this_process_serves_the_download_from_it(
    database_queue, worker, smtp, settings, tmp_path, client
):
    """Web and worker share only EXPORT_STORAGE, each with an EXPORT_DIR of its own, as separate dynos."""
    shared = {"location": str(tmp_path / "shared-storage")}
    settings.EXPORT_STORAGE = "django.core.files.storage.FileSystemStorage"
    settings.EXPORT_STORAGE_OPTIONS = shared
    settings.EXPORT_DIR = tmp_path / "web-disk"
    approver = StaffUserFactory(roles=[roles.APPROVER])
    rights_request, token = approved_request(RequestType.COPY, approver=approver, email="far@example.org")
    services.start_fulfilment(rights_request=rights_request, actor=approver)

    worker(
        EXPORT_DIR=str(tmp_path / "worker-disk"),
        EXPORT_STORAGE="django.core.files.storage.FileSystemStorage",
        EXPORT_STORAGE_OPTIONS=json.dumps(shared),
    )
    wait_for(lambda: state_of(rights_request) == S.COMPLETED, what="the copy to complete")
    export = DataExport.objects.get(request=rights_request)
    assert [p.name for p in (tmp_path / "shared-storage").iterdir()] == [export.file_name]
    assert not (tmp_path / "worker-disk").exists()

    client.post(reverse("dsr_requests:download-code", args=[token]))  # the worker sends the code
    wait_for(lambda: len(smtp.messages) >= 2, what="the download code, after the 'ready' email")
    bodies = [message.get_body(("plain",)).get_content() for _to, message in smtp.messages]
    (code,) = [m.group(1) for m in map(CODE_RE.search, bodies) if m]
    response = client.post(reverse("dsr_requests:download", args=[token]), {"code": code})

    assert response.status_code == 200
    assert "data.json" in zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist()
    assert not (tmp_path / "web-disk").exists()
