"""The provider registry and the rights-request provider (the Connect ones: registrations/tests)."""

import pytest

from dsr_requests import providers, services, tokens
from dsr_requests.models import RequestState
from dsr_requests.tests.factories import RightsRequestFactory

pytestmark = pytest.mark.django_db


def subject(email, **fields):
    return providers.Subject(email=email, email_hash=tokens.email_blind_index(email), **fields)


def test_every_app_registers_its_providers():
    keys = [p.key for p in providers.all_providers()]
    assert sorted(keys) == ["connect_registrations", "rights_requests", "usage_counts"]
    assert all(p.description for p in providers.all_providers())


def test_a_key_cannot_be_registered_twice():
    with pytest.raises(ValueError):
        providers.register(providers.RightsRequestProvider())


def test_a_subject_never_shows_its_email():
    assert "someone@example.org" not in repr(subject("someone@example.org"))


def test_requests_are_found_by_email_or_account_but_not_once_erased():
    provider = providers.get("rights_requests")
    mine = RightsRequestFactory(email="Me@Example.org")
    by_account = RightsRequestFactory(email="other@example.org", account_id="557058:me")
    erased = RightsRequestFactory(email="me@example.org", state=RequestState.COMPLETED)
    services.tombstone_request(request_id=erased.pk)
    RightsRequestFactory(email="stranger@example.org")

    found = {r["reference"] for r in provider.export(subject("me@example.org", account_id="557058:me"))}

    assert found == {mine.reference, by_account.reference}
    assert provider.find(subject("me@example.org")) == 1


def test_the_export_holds_only_the_public_timeline():
    provider = providers.get("rights_requests")
    rights_request = RightsRequestFactory(email="me@example.org")
    services._event(rights_request, actor=services.SYSTEM, note="shown", public=True)
    services._event(rights_request, actor=services.SYSTEM, note="staff only", public=False)
    (record,) = provider.export(subject("me@example.org"))
    assert [entry["note"] for entry in record["timeline"]] == ["shown"]
    assert list(record) == list(provider.fields)
