"""Changing DSR_BLIND_INDEX_KEY, then reindexing: earlier requests are found by email again."""

import pytest
from django.core.management import call_command

from dsr_requests import tokens
from dsr_requests.models import RightsRequest
from dsr_requests.tests.factories import RightsRequestFactory

pytestmark = pytest.mark.django_db


def test_after_a_key_change_the_command_makes_earlier_requests_findable_by_email_again(settings, capsys):
    settings.DSR_BLIND_INDEX_KEY = "old-" + "k" * 40
    requests = [RightsRequestFactory(email=f"person{i}@example.org") for i in range(5)]
    erased = RightsRequestFactory(email="gone@example.org")
    RightsRequest.objects.filter(pk=erased.pk).update(email="")
    old_erased_hash = RightsRequest.objects.get(pk=erased.pk).email_hash

    settings.DSR_BLIND_INDEX_KEY = "new-" + "n" * 40
    assert not RightsRequest.objects.filter(
        email_hash=tokens.email_blind_index("person3@example.org")
    ).exists()

    call_command("reindex_email_hashes", verbosity=1)

    found = RightsRequest.objects.get(email_hash=tokens.email_blind_index("PERSON3@example.org"))
    assert found.pk == requests[3].pk
    assert RightsRequest.objects.get(pk=erased.pk).email_hash == old_erased_hash
    assert "5 requests reindexed; 1 hold no email" in capsys.readouterr().out

    call_command("reindex_email_hashes", verbosity=0)  # again: nothing left to change
    assert RightsRequest.objects.get(pk=requests[0].pk).email_hash == tokens.email_blind_index(
        "person0@example.org"
    )
