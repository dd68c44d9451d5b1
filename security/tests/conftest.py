"""Fixtures for the security tests: staff users with a known password, and a client with no shortcuts."""

import pytest
from django.core.cache import cache
from django.test import Client

from dsr_requests import roles
from dsr_requests.tests.factories import StaffUserFactory

PASSWORD = "correct horse battery staple 42"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def browser():
    """A client that logs in only the real way: password form, then the second factor."""
    return Client()


@pytest.fixture
def staff(db):
    user = StaffUserFactory(roles=[roles.REVIEWER], username="reviewer1")
    user.set_password(PASSWORD)
    user.save()
    return user


def password_login(client, username, password=PASSWORD, **extra):
    """Post the admin login form; returns the response (not followed)."""
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password, "next": "/admin/"},
        **extra,
    )
