"""Database constraints that keep rights-request rows consistent."""

import pytest
from django.db import IntegrityError, connection

from dsr_requests.tests.factories import RightsRequestFactory


@pytest.mark.django_db
def test_name_and_email_are_not_stored_in_plain_text():
    request = RightsRequestFactory(name="Ada Lovelace", email="ada@example.org")
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, email FROM dsr_requests_rightsrequest WHERE id = %s", [request.pk])
        raw = b"".join(bytes(value) for value in cursor.fetchone())
    assert b"Ada" not in raw
    assert b"ada@example.org" not in raw


@pytest.mark.django_db
def test_held_from_state_is_refused_unless_on_hold():
    with pytest.raises(IntegrityError):
        RightsRequestFactory(state="verifying", held_from_state="in_review")


@pytest.mark.django_db
def test_on_hold_requires_a_state_to_return_to():
    with pytest.raises(IntegrityError):
        RightsRequestFactory(state="on_hold", held_from_state="")


@pytest.mark.django_db
def test_unknown_state_is_refused_by_the_database():
    with pytest.raises(IntegrityError):
        RightsRequestFactory(state="lost")


@pytest.mark.django_db
def test_repr_never_shows_name_or_email():
    request = RightsRequestFactory(name="Ada Lovelace", email="ada@example.org")
    assert "Ada" not in repr(request) and "ada@" not in repr(request)
