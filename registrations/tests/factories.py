"""Factories for Connect registrations."""

import secrets

import factory
from django.utils import timezone

from registrations.models import Registration


class RegistrationFactory(factory.django.DjangoModelFactory):
    """An installed and enabled tenant with a fresh random shared secret."""

    class Meta:
        model = Registration

    client_key = factory.Faker("uuid4")
    shared_secret = factory.LazyFunction(lambda: secrets.token_urlsafe(32))
    base_url = factory.Sequence(lambda n: f"https://site{n}.atlassian.net/wiki")
    display_url = factory.LazyAttribute(lambda o: o.base_url)
    product_type = "confluence"
    description = "Atlassian Confluence at https://example.atlassian.net/wiki"
    plugins_version = "1001.0.0"
    server_version = "6452"
    state = Registration.State.ENABLED
    installed_at = factory.LazyFunction(timezone.now)
    updated_at = factory.LazyFunction(timezone.now)
    enabled_at = factory.LazyFunction(timezone.now)
