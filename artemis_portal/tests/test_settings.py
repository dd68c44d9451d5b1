"""Start-up behaviour of the settings module, run in a separate process with a controlled environment."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "FERNET_KEYS": Fernet.generate_key().decode(),
    "APP_BASE_URL": "https://privacy.example.com",
    "BACKUP_KEYS": Fernet.generate_key().decode(),
    # Checked, not connected to: check --deploy only reads these.
    "CACHE_URL": "redis://127.0.0.1:6379/0",
    "EMAIL_URL": "smtp+tls://mailer:password@smtp.example.com:587",
    "TASKS_BACKEND": "database",
    "DSR_BLIND_INDEX_KEY": secrets.token_urlsafe(40),
    "EXPORT_STORAGE": "storages.backends.s3.S3Storage",
    "EXPORT_STORAGE_OPTIONS": '{"bucket_name": "artemis-exports"}',
    "BACKUP_STORAGE": "storages.backends.s3.S3Storage",
    "BACKUP_STORAGE_OPTIONS": '{"bucket_name": "artemis-backups"}',
    "DSR_BEHIND_PROXY": "1",
}


def manage(*args, **env):
    """Run manage.py with only the given variables (no .env file)."""
    clean = {"PATH": os.environ["PATH"], "ENV_FILE": "", **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("missing", ["SECRET_KEY", "FERNET_KEYS", "APP_BASE_URL", "BACKUP_KEYS"])
def test_production_refuses_to_start_without_a_required_key(missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    result = manage("check", **env)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert missing in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DATABASE_URL", "mysql://localhost/x"), ("FERNET_KEYS", "tooshort"), ("CACHE_URL", "bogus://x")],
)
def test_malformed_value_stops_start_up_with_one_line_naming_it(variable, value):
    result = manage("check", **{**PRODUCTION, variable: value})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert variable in result.stderr or "cache" in result.stderr.lower()


def test_development_starts_with_no_configuration_at_all():
    result = manage("check", DEBUG="1")
    assert result.returncode == 0, result.stderr


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("variable", "value", "warning"),
    [
        ("CACHE_URL", "locmemcache://", "artemis.W001"),
        ("EMAIL_URL", "consolemail://", "artemis.W002"),
        ("TASKS_BACKEND", "immediate", "artemis.W003"),
        ("DSR_BLIND_INDEX_KEY", "", "artemis.W004"),
        ("EXPORT_STORAGE", "", "artemis.W005"),
        ("BACKUP_STORAGE", "", "artemis.W006"),
        ("DSR_BEHIND_PROXY", "", "artemis.W007"),
    ],
)
def test_check_deploy_warns_about_each_development_default_left_in_production(variable, value, warning):
    result = manage("check", "--deploy", "--fail-level", "WARNING", **{**PRODUCTION, variable: value})
    assert result.returncode != 0
    assert warning in result.stdout + result.stderr


def test_production_settings_trust_heroku_forwarded_proto_and_secure_cookies():
    code = (
        "from django.conf import settings as s;"
        "print(s.SECURE_PROXY_SSL_HEADER, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE,"
        " s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.ALLOWED_HOSTS)"
    )
    result = manage("shell", "-c", code, **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert (
        "('HTTP_X_FORWARDED_PROTO', 'https') True True True 31536000 ['privacy.example.com']" in result.stdout
    )


def test_healthz_answers_503_json_when_the_database_is_down():
    # A real PostgreSQL URL on a port where nothing listens: the connection is refused.
    code = (
        "from django.test import Client;"
        "r = Client().get('/healthz', HTTP_HOST='127.0.0.1');"
        "print(r.status_code, r.content.decode())"
    )
    result = manage("shell", "-c", code, DEBUG="1", DATABASE_URL="postgres://postgres@127.0.0.1:1/none")
    assert result.returncode == 0, result.stderr
    assert '503 {"status": "error", "database": "unavailable"}' in result.stdout


@pytest.mark.parametrize(
    "backup_keys",
    [PRODUCTION["FERNET_KEYS"], f"{Fernet.generate_key().decode()},{PRODUCTION['FERNET_KEYS']}"],
)
def test_backup_key_that_is_also_a_field_encryption_key_stops_start_up(backup_keys):
    result = manage("check", **{**PRODUCTION, "BACKUP_KEYS": backup_keys})
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "Configuration error: BACKUP_KEYS must not reuse a key from FERNET_KEYS; generate a separate one."
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BACKUP_KEYS", "not-a-fernet-key-but-long-enough-to-pass-length"),
        ("BACKUP_STORAGE_OPTIONS", "[1]"),
        ("EXPORT_STORAGE_OPTIONS", "{not json"),
        ("DSR_EXPORT_VALID_DAYS", "seven"),
        ("DSR_FULFILMENT_MAX_FAILURES", "0"),
        ("CONNECT_TENANT_LOCAL_SECONDS", "soon"),
        ("SESSION_COOKIE_AGE", "-5"),
    ],
)
def test_a_malformed_setting_stops_start_up_with_one_line_naming_it(variable, value):
    result = manage("check", **{**PRODUCTION, variable: value})
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert variable in result.stderr


@pytest.mark.parametrize("chosen", ["0", "1"])
def test_check_deploy_accepts_either_deliberate_choice_of_behind_proxy(chosen):
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", **{**PRODUCTION, "DSR_BEHIND_PROXY": chosen}
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_explains_which_client_ip_the_rate_limit_sees_when_behind_proxy_is_unset():
    """Security round two, item 7."""
    env = {k: v for k, v in PRODUCTION.items() if k != "DSR_BEHIND_PROXY"}
    result = manage("check", "--deploy", **env)
    output = result.stdout + result.stderr
    assert "artemis.W007" in output
    assert "REMOTE_ADDR" in output and "rate-limit budget" in output and "DSR_BEHIND_PROXY=1" in output
