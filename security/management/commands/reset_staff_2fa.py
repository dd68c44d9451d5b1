"""Remove a staff member's authenticator and backup codes (lost phone); their next login re-enrols."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from security import services


class Command(BaseCommand):
    help = "Remove a user's two-factor devices so that their next login asks them to enrol again."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username, **options):
        User = get_user_model()
        user = User._default_manager.filter(**{User.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        services.reset_second_factor(user=user, actor="manage.py reset_staff_2fa")
        self.stdout.write(
            f"Removed the two-factor devices of {username!r}. Their next admin login asks them to set up "
            f"an authenticator (at /admin/2fa/enrol/), within {settings.STAFF_2FA_ENROL_DAYS} days; "
            "check who they are before they do."
        )
