"""Write forge/manifest.yml from the Connect descriptor, or (--check) fail when the file has drifted."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from registrations import forge_manifest


class Command(BaseCommand):
    help = "Write forge/manifest.yml (Connect on Forge) from the descriptor's source; --check only compares."

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="Fail if the file differs; write nothing.")
        parser.add_argument("--path", default=str(Path(settings.BASE_DIR) / "forge" / "manifest.yml"))

    def handle(self, *args, check, path, **options):
        text = forge_manifest.render()
        target = Path(path)
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if check:
            if current != text:
                raise CommandError(
                    f"{target} has drifted from the Connect descriptor; run "
                    "`python manage.py forge_manifest` with the settings in "
                    "registrations/forge_manifest.py COMMITTED_SETTINGS and commit it."
                )
            self.stdout.write(f"{target} matches the descriptor.")
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        self.stdout.write(f"Wrote {target}.")
