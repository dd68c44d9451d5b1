"""Make sure the local demo has a staff account, without a password baked into the code."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a superuser 'admin' with a random password if no superuser exists; print how to log in."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write(
                "A superuser exists. Forgot the password? Run: .venv/bin/python manage.py changepassword "
                f"{User.objects.filter(is_superuser=True).values_list('username', flat=True).first()}"
            )
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(f"Created superuser {username!r} with password {password}")
            + "\nIt is shown only this once; change it with: .venv/bin/python manage.py changepassword "
            + username
        )
