"""Make sure the local demo has a staff account, without a password baked into the code."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from security import services as security_services

TWO_FACTOR_HINT = (
    "Staff need two factors: after the password, the admin asks for a code from an authenticator app "
    "(first time: it shows a QR code to scan at /admin/2fa/enrol/, then ten backup codes once). "
)
RELAXED_HINT = (
    "For a quick local demo without an app, set STAFF_2FA_REQUIRED=0 in .env (only works with DEBUG=1)."
)


class Command(BaseCommand):
    help = "Create a superuser 'admin' with a random password if no superuser exists; print how to log in."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        User = get_user_model()
        existing = User.objects.filter(is_superuser=True).order_by("pk").first()
        if existing is not None:
            name = existing.get_username()
            self.stdout.write(
                "A superuser exists. Forgot the password? Run: "
                f".venv/bin/python manage.py changepassword {name}"
            )
            self._two_factor_hint()
            if not security_services.may_enrol(user=existing):
                self.stdout.write(
                    f"{name!r} has no authenticator and its set-up period is over; reopen it with: "
                    f".venv/bin/python manage.py reset_staff_2fa {name}"
                )
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(f"Created superuser {username!r} with password {password}")
            + "\nIt is shown only this once; change it with: .venv/bin/python manage.py changepassword "
            + username
        )
        self._two_factor_hint()

    def _two_factor_hint(self):
        if settings.STAFF_2FA_REQUIRED:
            self.stdout.write(TWO_FACTOR_HINT + RELAXED_HINT)
        else:
            self.stdout.write(
                "STAFF_2FA_REQUIRED is off (DEBUG only): the admin opens after the password. You can still "
                "set up an authenticator at /admin/2fa/enrol/."
            )
