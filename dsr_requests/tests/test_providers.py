"""The provider registry and the rights-request provider (the Connect ones: registrations/tests)."""

import json
from pathlib import Path

import jsonschema
import pytest

from dsr_requests import export_encoding, providers, services, tokens
from dsr_requests.models import RequestState
from dsr_requests.tests.factories import RightsRequestFactory

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "dsr-export.schema.json").read_text())
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


def test_requests_are_found_by_email_or_account_and_an_erased_one_as_its_tombstone():
    """What is left of an erased request is still held, so it is exported (Art. 15(1) GDPR), blank."""
    provider = providers.get("rights_requests")
    mine = RightsRequestFactory(email="Me@Example.org")
    by_account = RightsRequestFactory(email="other@example.org", account_id="557058:me")
    erased = RightsRequestFactory(email="me@example.org", state=RequestState.COMPLETED, name="Old Name")
    services.tombstone_request(request_id=erased.pk)
    RightsRequestFactory(email="stranger@example.org")

    records = {r["reference"]: r for r in provider.export(subject("me@example.org", account_id="557058:me"))}

    assert set(records) == {mine.reference, by_account.reference, erased.reference}
    tombstone = records[erased.reference]
    assert tombstone["erased_at"] is not None
    record_schema = {"$defs": SCHEMA["$defs"], "$ref": "#/$defs/rights_request"}
    jsonschema.validate(json.loads(export_encoding.dumps(tombstone)), record_schema)
    assert (tombstone["name"], tombstone["email"], tombstone["details"]) == ("", "", "")
    assert provider.find(subject("me@example.org")) == 2


def test_a_tombstone_is_neither_erased_again_nor_corrected():
    provider = providers.get("rights_requests")
    erased = RightsRequestFactory(email="me@example.org", state=RequestState.COMPLETED)
    services.tombstone_request(request_id=erased.pk)
    assert provider.rectify(subject("me@example.org"), {"name": "New Name"}) == 0
    erasure = provider.erase(subject("me@example.org"))
    assert erasure.erased == {"earlier requests (kept as tombstones)": 0}


def test_the_export_holds_the_staff_only_timeline_too():
    """Internal notes are personal data about the requester too (Art. 15(1) GDPR / UK GDPR)."""
    provider = providers.get("rights_requests")
    rights_request = RightsRequestFactory(email="me@example.org")
    services._event(rights_request, actor=services.SYSTEM, note="shown", public=True)
    services._event(rights_request, actor=services.SYSTEM, note="staff only", public=False)
    (record,) = provider.export(subject("me@example.org"))
    assert [(entry["note"], entry["public"]) for entry in record["timeline"]] == [
        ("shown", True),
        ("staff only", False),
    ]
    assert list(record) == list(provider.fields)


def test_every_provider_says_what_it_withholds_and_why():
    everyone = subject("me@example.org")
    for provider in providers.all_providers():
        for item in provider.withheld(everyone):
            assert isinstance(item, providers.Withheld)
            assert str(item.what) and str(item.reason)
    assert providers.Provider().withheld(everyone) == []
