"""Two requesters (or two tabs) acting at once: row locks let exactly one of them succeed."""

import threading

import pytest
from django.db import connection

from dsr_requests import services
from dsr_requests.models import IdentityCheck, RequestState, RightsRequest
from dsr_requests.tests.factories import RightsRequestFactory

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def _race(action, times=2):
    """Run ``action`` in ``times`` threads released together; returns the outcomes (result or exception)."""
    barrier = threading.Barrier(times)
    outcomes = []

    def run():
        try:
            barrier.wait()
            outcomes.append(action())
        except Exception as exc:  # collected and asserted on by the test
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def test_a_confirmation_link_used_twice_at_once_confirms_exactly_once():
    request = RightsRequestFactory()
    outcomes = _race(lambda: services.confirm_email(reference=request.reference))
    assert sum(isinstance(o, services.ActionRefused) for o in outcomes) == 1
    request.refresh_from_db()
    assert request.state == RequestState.VERIFYING
    assert request.identity_checks.count() == 1
    assert request.events.filter(to_state="verifying").count() == 1


def test_an_account_code_entered_twice_at_once_binds_exactly_once():
    request = RightsRequestFactory(state=RequestState.VERIFYING)
    IdentityCheck.objects.create(request=request, step="email", method="test", outcome="passed")
    code = services.issue_account_code(rights_request=request)
    site = {"client_key": "t", "site_url": "https://a.atlassian.net", "account_id": "557058:x"}
    outcomes = _race(lambda: services.redeem_account_code(code=code, **site))
    assert sum(isinstance(o, RightsRequest) for o in outcomes) == 1
    assert sum(isinstance(o, services.ActionRefused) for o in outcomes) == 1
    assert request.identity_checks.filter(step="account").count() == 1
