"""Re-encrypt every encrypted value under the first key in FERNET_KEYS."""

from django.core.management.base import BaseCommand, CommandError

from registrations import services


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted field value in the database with the first key in FERNET_KEYS. "
        "Put the new key first, keep the old ones after it, run this, then remove the old keys. "
        "Safe to interrupt and run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per transaction (default 500).")

    def handle(self, *args, batch_size, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        for model, fields in services.encrypted_fields():
            names = ", ".join(field.name for field in fields)
            label = f"{model._meta.label} ({names})"

            def progress(done, rotated, total, label=label):
                self.stdout.write(f"{label}: {done}/{total} rows checked, {rotated} values re-encrypted")

            try:
                done, rotated = services.reencrypt_model(
                    model=model,
                    fields=fields,
                    batch_size=batch_size,
                    progress=progress,
                    actor="rotate_fernet_keys",
                )
            except services.UndecryptableValue as error:
                raise CommandError(
                    f"{error}; put the key it was written with back into FERNET_KEYS."
                ) from None
            self.stdout.write(
                self.style.SUCCESS(f"{label}: done, {done} rows, {rotated} values re-encrypted")
            )
