"""``manage.py rotate_fernet_keys``: re-encrypts every encrypted value, in batches, resumably."""

import base64
import os
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from registrations import services
from registrations.models import Registration
from registrations.tests.factories import RegistrationFactory

pytestmark = pytest.mark.django_db


def new_key():
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@pytest.fixture
def use_keys(settings):
    """Switch FERNET_KEYS mid-test; the fields cache their Fernet objects, so drop those caches too."""

    def clear():
        for _model, fields in services.encrypted_fields():
            for field in fields:
                for name in ("keys", "fernet_keys", "fernet"):
                    field.__dict__.pop(name, None)

    def switch(*keys):
        settings.FERNET_KEYS = list(keys)
        clear()

    yield switch
    clear()


def stored_tokens():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT id, shared_secret FROM registrations_registration ORDER BY id")
        return {pk: bytes(token) for pk, token in cursor.fetchall()}


def rotate(batch_size=3):
    out = StringIO()
    call_command("rotate_fernet_keys", "--batch-size", str(batch_size), stdout=out)
    return out.getvalue()


def test_rotation_re_encrypts_every_value_under_the_new_key_in_batches(use_keys):
    old, new = new_key(), new_key()
    use_keys(old)
    RegistrationFactory.create_batch(7)
    secrets = dict(Registration.objects.values_list("pk", "shared_secret"))
    before = stored_tokens()

    use_keys(new, old)
    output = rotate(batch_size=3)
    assert "registrations.Registration (shared_secret): 3/7 rows checked, 3 values re-encrypted" in output
    assert "7/7 rows checked, 7 values re-encrypted" in output
    after = stored_tokens()
    assert all(after[pk] != before[pk] for pk in before)

    use_keys(new)  # the old key is gone: everything must still decrypt
    assert dict(Registration.objects.values_list("pk", "shared_secret")) == secrets


def test_second_run_has_nothing_to_do(use_keys):
    old, new = new_key(), new_key()
    use_keys(old)
    RegistrationFactory.create_batch(4)
    use_keys(new, old)
    rotate()
    before = stored_tokens()
    assert "done, 4 rows, 0 values re-encrypted" in rotate()
    assert stored_tokens() == before


def test_interrupted_run_continues_where_it_stopped(use_keys):
    old, new = new_key(), new_key()
    use_keys(old)
    RegistrationFactory.create_batch(5)
    use_keys(new, old)

    class Interrupted(Exception):
        pass

    def stop_after_first_batch(done, rotated, total):
        raise Interrupted

    with pytest.raises(Interrupted):
        services.reencrypt_model(
            model=Registration,
            fields=[Registration._meta.get_field("shared_secret")],
            batch_size=2,
            progress=stop_after_first_batch,
            actor="test",
        )
    assert "done, 5 rows, 3 values re-encrypted" in rotate(batch_size=2)


def test_value_no_key_can_decrypt_is_a_one_line_error(use_keys):
    lost = new_key()
    use_keys(lost)
    RegistrationFactory()
    use_keys(new_key())
    with pytest.raises(CommandError, match="decrypts with none of FERNET_KEYS"):
        rotate()


def test_batch_size_must_be_positive():
    with pytest.raises(CommandError, match="at least 1"):
        rotate(batch_size=0)
