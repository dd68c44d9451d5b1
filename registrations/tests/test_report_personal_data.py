"""``manage.py report_personal_data``: the daily entry point of personal data reporting."""

import secrets
import subprocess
import sys
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from dsr_requests.models import RightsRequest
from dsr_requests.tests.factories import RightsRequestFactory
from registrations.models import PersonalDataReport
from registrations.tests.factories import RegistrationFactory

pytestmark = pytest.mark.django_db


def site_with_accounts(api, count):
    secret = secrets.token_urlsafe(32)
    tenant = RegistrationFactory(base_url=api.site("acme", secret), shared_secret=secret)
    ids = ["557058:" + str(uuid.uuid4()) for _ in range(count)]
    for account_id in ids:
        RightsRequestFactory(account_id=account_id, site_client_key=tenant.client_key)
    return tenant, ids


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("report_personal_data", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_reports_with_progress_and_says_when_the_next_report_is_due(reporting_api):
    tenant, ids = site_with_accounts(reporting_api, 100)
    closed = min(ids)  # batches go out in account-ID order: the smallest is in the first batch
    reporting_api.closed = {closed}

    out, err = run()

    assert out.splitlines() == [
        "Reporting 100 account(s) in 2 batch(es).",
        f"batch 1/2 via {tenant.client_key}: 90 account(s), 1 closed (erased), 0 updated (nothing cached)",
        f"batch 2/2 via {tenant.client_key}: 10 account(s), 0 closed (erased), 0 updated (nothing cached)",
        out.splitlines()[-1],
    ]
    assert out.splitlines()[-1].startswith("Reported 100 account(s) in 2 batch(es); 1 record(s) erased")
    assert "Next report due" in out and err == ""
    assert not RightsRequest.objects.filter(account_id=closed).exists()


def test_does_nothing_until_the_report_is_due_unless_forced(reporting_api):
    site_with_accounts(reporting_api, 1)
    PersonalDataReport.objects.create(pk=1, next_due_at=timezone.now() + timedelta(days=3))

    out, _err = run()
    assert out.startswith("Not due until ") and reporting_api.received == []

    run("--force")
    assert len(reporting_api.received) == 1


def test_a_failed_batch_is_a_one_line_error_and_a_non_zero_exit(reporting_api):
    tenant, _ids = site_with_accounts(reporting_api, 1)
    reporting_api.script = [(500, {}, b"boom")]

    with pytest.raises(CommandError) as excinfo:
        run()

    message = str(excinfo.value)
    assert message.startswith("1 of 1 batch(es) failed; the report is due again after ")
    assert "\n" not in message


def test_silent_with_verbosity_zero_when_all_went_well(reporting_api):
    site_with_accounts(reporting_api, 3)

    out, err = run("-v", "0")

    assert out == "" and err == "" and len(reporting_api.received) == 1


def test_with_nothing_stored_it_says_so(reporting_api):
    out, _err = run()

    assert out == "No Atlassian account IDs are stored; nothing to report.\n"


def test_manage_py_exits_non_zero_with_one_line_on_stderr_when_a_batch_fails(tmp_path):
    """Through manage.py, as the scheduler runs it: no traceback, exit code 1 (SQLite file database)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "ENV_FILE": "",
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v", "0"], env=env, check=True, timeout=120)
    script = (
        "from registrations.tests.factories import RegistrationFactory;"
        "from dsr_requests.tests.factories import RightsRequestFactory;"
        "t = RegistrationFactory(base_url='http://127.0.0.1:9/wiki');"
        "RightsRequestFactory(account_id='557058:abc', site_client_key=t.client_key)"
    )
    subprocess.run([python, "manage.py", "shell", "-c", script], env=env, check=True, timeout=120)

    result = subprocess.run(
        [python, "manage.py", "report_personal_data"], env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("CommandError: 1 of 1 batch(es) failed")
