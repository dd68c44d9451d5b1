"""Test helpers: log a staff user in with both factors, the way the admin's login flow leaves them.

The root ``conftest.py`` makes pytest-django's ``client`` fixture a ``SecondFactorClient``, so the many
admin tests that call ``client.force_login(staff)`` get a session that has passed a real TOTP device
(``django_otp.login``), as after a real login. Tests of the login flow itself use a plain
``django.test.Client``.
"""

from django.contrib.sessions.backends.base import SessionBase
from django.test import Client, RequestFactory
from django_otp import login as otp_login
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

TEST_DEVICE_NAME = "test authenticator"


def authenticator_for(user):
    """The user's confirmed TOTP device, created on first use."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    return device or TOTPDevice.objects.create(user=user, name=TEST_DEVICE_NAME, confirmed=True)


def current_code(device, *, offset_steps=0):
    """The code an authenticator app shows now (or ``offset_steps`` steps later) for ``device``."""
    code = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=offset_steps)
    return str(code).zfill(device.digits)


def mark_verified(client, user):
    """Record in ``client``'s session that ``user`` passed the second factor with their authenticator."""
    session = client.session
    request = RequestFactory().get("/")
    request.session = session
    request.user = user
    otp_login(request, authenticator_for(user))
    assert isinstance(session, SessionBase)
    session.save()


class SecondFactorClient(Client):
    """A test client whose ``force_login`` of a staff user also passes the second factor."""

    def force_login(self, user, backend=None):
        super().force_login(user, backend)
        if user.is_staff:
            mark_verified(self, user)
