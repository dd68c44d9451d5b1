"""The one settings module, driven by the environment (django-environ).

Every variable is listed, with its default, in README.md and .env.example. Unsafe defaults apply only
when DEBUG is on; in production a missing or malformed value stops start-up with one line naming it.
"""

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from artemis_portal.config import (
    ConfigError,
    check_base_url,
    check_database_url,
    parse_key_list,
    parse_uuid_list,
    require,
)

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env (written by `python3 dev.py`) fills in what the real environment leaves unset.
# ENV_FILE names another file; ENV_FILE= (empty) reads none, as the settings tests do.
_env_file = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
if _env_file and Path(_env_file).is_file():
    env.read_env(_env_file, overwrite=False)


def env_number(name, default, *, minimum=0, kind=int):
    """A numeric variable (``kind`` int or float); a malformed or too small one stops start-up with one
    line naming it, instead of a traceback from deep inside the settings."""
    raw = env.str(name, default="").strip()
    try:
        value = kind(raw) if raw else default
    except ValueError:
        value = None
    if value is None or not value >= minimum:  # "not >=" also refuses nan
        what = "a whole number" if kind is int else "a number"
        sys.exit(f"Configuration error: {name} must be {what} of at least {minimum}.")
    return value


def _parse_url(name, parser, url):
    """Parse a service URL with django-environ, naming the variable if it cannot."""
    try:
        return parser(url)
    except (ImproperlyConfigured, ValueError, KeyError) as exc:
        raise ConfigError(f"{name} is not valid: {exc}") from None


def _load():
    """Read and validate everything that can be malformed; returns a dict of settings values."""
    debug = env.bool("DEBUG", default=False)
    secret_key = require(
        "SECRET_KEY",
        env.str("SECRET_KEY", default=""),
        debug=debug,
        dev_default="django-insecure-development-only-key-do-not-use-in-production",
    )
    fernet_keys = parse_key_list(
        "FERNET_KEYS",
        require("FERNET_KEYS", env.str("FERNET_KEYS", default=""), debug=debug, dev_default=secret_key),
    )
    app_base_url = check_base_url(
        "APP_BASE_URL",
        require(
            "APP_BASE_URL",
            env.str("APP_BASE_URL", default=""),
            debug=debug,
            dev_default="http://127.0.0.1:8000",
        ),
        debug=debug,
    )
    database_url = check_database_url(env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"))
    database = _parse_url("DATABASE_URL", env.db_url_config, database_url)
    cache = _parse_url(
        "CACHE_URL", env.cache_url_config, env.str("CACHE_URL", default="locmemcache://artemis")
    )
    email = _parse_url("EMAIL_URL", env.email_url_config, env.str("EMAIL_URL", default="consolemail://"))
    return {
        "debug": debug,
        "secret_key": secret_key,
        "fernet_keys": fernet_keys,
        "app_base_url": app_base_url,
        "database": database,
        "cache": cache,
        "email": email,
    }


try:
    _cfg = _load()
except ConfigError as exc:
    # One line, naming the variable; never a traceback from inside a library.
    sys.exit(f"Configuration error: {exc}")

DEBUG = _cfg["debug"]
SECRET_KEY = _cfg["secret_key"]
FERNET_KEYS = _cfg["fernet_keys"]
APP_BASE_URL = _cfg["app_base_url"]

_app_host = urlsplit(APP_BASE_URL).hostname
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS",
    default=["127.0.0.1", "localhost", "[::1]", _app_host] if DEBUG else [_app_host],
)
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS", default=[APP_BASE_URL] if APP_BASE_URL.startswith("https") else []
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_tasks",
    "django_tasks_db",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    "csp",
    "artemis_portal",
    "registrations",
    "dsr_requests",
    "security",
]

MIDDLEWARE = [
    "artemis_portal.middleware.RequestIdMiddleware",
    "artemis_portal.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "security.middleware.PermissionsPolicyMiddleware",
    # Before everything else: a Connect token naming no tenant is refused here with its own fixed
    # headers (registrations/middleware.py, issue 19).
    "registrations.middleware.ConnectEarlyRefusalMiddleware",
    # django-csp's, sending a response's own whole policy (a Connect page's) without rebuilding it.
    "security.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "security.middleware.AdminSessionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as axes asks: it turns a lockout flagged during the view into the lockout page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First, as axes asks: refuses a locked-out username/IP before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "artemis_portal.urls"
WSGI_APPLICATION = "artemis_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "artemis_portal.context_processors.portal",
            ],
        },
    },
]

DATABASES = {"default": _cfg["database"]}
# Persistent connections with health checks: a database restart costs one failed request per
# connection, not a process restart.
DATABASES["default"].setdefault("CONN_MAX_AGE", env_number("DB_CONN_MAX_AGE", 0 if DEBUG else 60))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # A database host that does not answer fails the request in seconds (a 503), not at the router timeout.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env_number("DB_CONNECT_TIMEOUT", 5, minimum=1)
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": _cfg["cache"]}

globals().update(_cfg["email"])  # EMAIL_BACKEND, EMAIL_HOST, ... from EMAIL_URL
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Artemis Privacy <privacy@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_TIMEOUT = env_number("EMAIL_TIMEOUT", 10, minimum=1)

TASKS = {
    "default": {
        # "immediate" runs jobs inline (embedded demo, unit tests); "database" queues them for
        # `python manage.py db_worker` (the Procfile's worker).
        "BACKEND": {
            "immediate": "django_tasks.backends.immediate.ImmediateBackend",
            "database": "django_tasks_db.DatabaseBackend",
        }[env.str("TASKS_BACKEND", default="immediate")],
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
LANGUAGES = [("en-gb", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="Europe/London")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security (production values whenever DEBUG is off) -----------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")  # Heroku's router terminates TLS
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # platform health probes speak plain http internally
SECURE_HSTS_SECONDS = env_number("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_number("SESSION_COOKIE_AGE", 8 * 60 * 60, minimum=1)
X_FRAME_OPTIONS = "DENY"

# --- Staff security (security/README.md) ---------------------------------------------------------
from datetime import timedelta as _timedelta  # noqa: E402

from csp.constants import NONE as _CSP_NONE  # noqa: E402
from csp.constants import SELF as _CSP_SELF  # noqa: E402


def _load_staff_security():
    """Two-factor, lockout, session and audit settings; a wrong value stops start-up naming it."""
    required = env.bool("STAFF_2FA_REQUIRED", default=True)
    if not required and not DEBUG:
        raise ConfigError("STAFF_2FA_REQUIRED may be turned off only when DEBUG is on.")
    values = {}
    for name, default in (
        ("ADMIN_IDLE_TIMEOUT_MINUTES", 30),
        ("LOGIN_FAILURE_LIMIT", 5),
        ("LOGIN_LOCKOUT_MINUTES", 15),
        ("ACCESS_EVENT_RETENTION_DAYS", 730),
        ("STAFF_2FA_ENROL_DAYS", 7),
    ):
        values[name] = env_number(name, default, minimum=1)
    return required, values


try:
    STAFF_2FA_REQUIRED, _staff = _load_staff_security()
except ConfigError as exc:
    sys.exit(f"Configuration error: {exc}")
# A staff account without an authenticator may enrol one only this many days after it was created or
# its two-factor was reset (manage.py reset_staff_2fa): a password found later cannot enrol another phone.
STAFF_2FA_ENROL_DAYS = _staff["STAFF_2FA_ENROL_DAYS"]
# The admin session ends after this long without a request, and after SESSION_COOKIE_AGE in any case.
ADMIN_IDLE_TIMEOUT_MINUTES = _staff["ADMIN_IDLE_TIMEOUT_MINUTES"]
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# AccessEvent rows older than this are deleted by `manage.py prune_access_events`.
ACCESS_EVENT_RETENTION_DAYS = _staff["ACCESS_EVENT_RETENTION_DAYS"]
# Name of the issuer shown in authenticator apps.
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Artemis privacy portal")
# Each failed code doubles the wait before the device accepts another (1 s, 2 s, 4 s, ...).
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1

# django-axes: failed password or second-factor attempts lock out the username and the client IP.
AXES_FAILURE_LIMIT = _staff["LOGIN_FAILURE_LIMIT"]
AXES_COOLOFF_TIME = _timedelta(minutes=_staff["LOGIN_LOCKOUT_MINUTES"])
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_CALLABLE = "security.views.locked_out"
# Our own audit (security.AccessEvent) records logins; axes keeps only the counters it needs.
AXES_DISABLE_ACCESS_LOG = True
# Axes' own log lines name the username, IP and user agent of each attempt: not in our logs.
AXES_VERBOSE = False
AXES_RESET_ON_SUCCESS = False
# One rule for the client IP everywhere: REMOTE_ADDR, or behind Heroku's router (DSR_BEHIND_PROXY,
# below) the last X-Forwarded-For hop, the only one the router itself wrote.
AXES_CLIENT_IP_CALLABLE = "security.audit.client_ip"

# Content-Security-Policy (django-csp 4): no inline script anywhere; Connect pages widen
# frame-ancestors to their tenant's site and load Atlassian's all.js (registrations/jwt.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [_CSP_SELF],
        "script-src": [_CSP_SELF],
        "style-src": [_CSP_SELF],
        "img-src": [_CSP_SELF, "data:"],
        "font-src": [_CSP_SELF],
        "connect-src": [_CSP_SELF],
        "form-action": [_CSP_SELF],
        "frame-ancestors": [_CSP_NONE],
        "base-uri": [_CSP_NONE],
        "object-src": [_CSP_NONE],
    }
}
# Browser features no page of the portal uses, refused for it and for anything it embeds.
PERMISSIONS_POLICY = (
    "accelerometer=(), autoplay=(), camera=(), display-capture=(), encrypted-media=(), fullscreen=(), "
    "geolocation=(), gyroscope=(), magnetometer=(), microphone=(), midi=(), payment=(), "
    "picture-in-picture=(), publickey-credentials-get=(), screen-wake-lock=(), serial=(), usb=(), "
    "xr-spatial-tracking=()"
)

# --- Logging: stdout, one line per request with its id, personal data and secrets masked --------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "artemis_portal.logging.RequestIdFilter"},
        "redact": {"()": "artemis_portal.logging.RedactingFilter"},
        "client_refusal": {"()": "artemis_portal.logging.ClientRefusalFilter"},
    },
    "formatters": {
        "line": {"format": "%(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "filters": ["request_id", "client_refusal", "redact"],
            "formatter": "line",
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # Our RequestIdMiddleware writes the one access line per request; these would repeat it.
        "django.server": {"handlers": [], "propagate": False},
        "django.request": {"level": "ERROR"},
        "gunicorn.access": {"handlers": [], "propagate": False},
        # axes notes every login and clean-up at INFO; our audit table records logins instead.
        "axes": {"level": "WARNING"},
    },
}


# --- Rights requests: workflow and deadlines ------------------------------------------------------
# The policy's promise in working days, and the public-holiday calendar that says which days are working
# days (ISO 3166 country code and optional subdivision, as the holidays library names them).
def _dsr_calendar():
    """Read and check the deadline settings; a wrong value stops start-up with one line naming it."""
    import holidays

    working_days = env_number("DSR_WORKING_DAYS", 30, minimum=1)
    country = env.str("DSR_HOLIDAY_COUNTRY", default="GB").upper()
    subdiv = env.str("DSR_HOLIDAY_SUBDIV", default="").upper() or None
    try:
        holidays.country_holidays(country, subdiv=subdiv)
    except NotImplementedError as exc:
        raise ConfigError(
            f"DSR_HOLIDAY_COUNTRY / DSR_HOLIDAY_SUBDIV are not a known calendar: {exc}."
        ) from None
    return working_days, country, subdiv


try:
    DSR_WORKING_DAYS, DSR_HOLIDAY_COUNTRY, DSR_HOLIDAY_SUBDIV = _dsr_calendar()
except ConfigError as exc:
    sys.exit(f"Configuration error: {exc}")
# Who gets the daily staff digest (`manage.py dsr_reminders`). Empty: every active staff member with
# an email who may view rights requests.
DSR_DIGEST_TO = env.list("DSR_DIGEST_TO", default=[])

# --- Rights requests: intake ---------------------------------------------------------------------
import json as _json  # noqa: E402

# Key of the email blind index and account-code hashes. Empty: derived from SECRET_KEY; set it in
# production so SECRET_KEY can rotate without losing the index.
DSR_BLIND_INDEX_KEY = env.str("DSR_BLIND_INDEX_KEY", default="")
DSR_CONFIRMATION_MAX_AGE_HOURS = env_number("DSR_CONFIRMATION_MAX_AGE_HOURS", 48, minimum=1)
DSR_REMINDER_AFTER_DAYS = env_number("DSR_REMINDER_AFTER_DAYS", 3, minimum=1)
DSR_CLOSE_UNVERIFIED_AFTER_DAYS = env_number("DSR_CLOSE_UNVERIFIED_AFTER_DAYS", 7, minimum=1)
DSR_ACCOUNT_CODE_TTL_MINUTES = env_number("DSR_ACCOUNT_CODE_TTL_MINUTES", 30, minimum=1)
DSR_UPLOAD_MAX_BYTES = env_number("DSR_UPLOAD_MAX_BYTES", 5 * 1024 * 1024, minimum=1)
DSR_EMAIL_MAX_ATTEMPTS = env_number("DSR_EMAIL_MAX_ATTEMPTS", 6, minimum=1)
# Behind exactly one proxy (Heroku's router): the client IP is the last X-Forwarded-For hop.
DSR_BEHIND_PROXY = env.bool("DSR_BEHIND_PROXY", default=False)
# Whether someone chose DSR_BEHIND_PROXY (either way): `check --deploy` warns when production left it to
# the default (artemis.W007, artemis_portal/checks.py).
DSR_BEHIND_PROXY_CHOSEN = bool(os.environ.get("DSR_BEHIND_PROXY", "").strip())
# Rate limits as "<count>/<seconds>".
DSR_RATE_SUBMIT_PER_IP = env.str("DSR_RATE_SUBMIT_PER_IP", default="20/3600")
DSR_RATE_SUBMIT_PER_EMAIL = env.str("DSR_RATE_SUBMIT_PER_EMAIL", default="5/3600")
DSR_RATE_STATUS_PER_IP = env.str("DSR_RATE_STATUS_PER_IP", default="300/60")
DSR_RATE_CODE_PER_ACCOUNT = env.str("DSR_RATE_CODE_PER_ACCOUNT", default="10/900")
# Identity proof per request type: a list of requirements, each a list of steps of which one must pass.
_DSR_DEFAULT_STEPS = [["email"], ["account", "document"]]
DSR_IDENTITY_STEPS = {
    "processing": [["email"]],
    "review": _DSR_DEFAULT_STEPS,
    "change": _DSR_DEFAULT_STEPS,
    "copy": _DSR_DEFAULT_STEPS,
    "transfer": _DSR_DEFAULT_STEPS,
    "delete": _DSR_DEFAULT_STEPS,
}
try:
    DSR_IDENTITY_STEPS.update(_json.loads(env.str("DSR_IDENTITY_STEPS", default="") or "{}"))
    for _rate in ("SUBMIT_PER_IP", "SUBMIT_PER_EMAIL", "STATUS_PER_IP", "CODE_PER_ACCOUNT"):
        _count, _seconds = globals()[f"DSR_RATE_{_rate}"].split("/")
        if int(_count) < 1 or int(_seconds) < 1:
            raise ValueError(f"DSR_RATE_{_rate} must be <count>/<seconds>, both positive")
    for _type, _requirements in DSR_IDENTITY_STEPS.items():
        if _type not in ("processing", "review", "change", "copy", "transfer", "delete") or not all(
            isinstance(group, list) and group and set(group) <= {"email", "account", "document"}
            for group in _requirements
        ):
            raise ValueError(f"DSR_IDENTITY_STEPS has an invalid entry for {_type!r}")
except (ValueError, TypeError, AttributeError) as exc:
    sys.exit(f"Configuration error: {exc}")

# --- Connect (registrations) --------------------------------------------------------------------
# The descriptor at /atlassian-connect.json is built from these; see registrations/README.md.
CONNECT_APP_KEY = env.str("CONNECT_APP_KEY", default="com.artemis-software.privacy")
CONNECT_APP_NAME = env.str("CONNECT_APP_NAME", default="Artemis Privacy")
CONNECT_VENDOR_NAME = env.str("CONNECT_VENDOR_NAME", default="Artemis Software")
CONNECT_VENDOR_URL = env.str("CONNECT_VENDOR_URL", default=APP_BASE_URL)
CONNECT_SCOPES = env.list("CONNECT_SCOPES", default=["READ"])
try:
    # https in production: the keys fetched here decide who may install the app.
    CONNECT_INSTALL_KEYS_URL = check_base_url(
        "CONNECT_INSTALL_KEYS_URL",
        env.str("CONNECT_INSTALL_KEYS_URL", default="https://connect-install-keys.atlassian.com"),
        debug=DEBUG,
    )
except ConfigError as exc:
    sys.exit(f"Configuration error: {exc}")
CONNECT_INSTALL_KEYS_TIMEOUT = env_number("CONNECT_INSTALL_KEYS_TIMEOUT", 5.0, minimum=0.1, kind=float)
# A stream of installs with forged kids costs at most this many key fetches a minute (key_fetch.py);
# a kid the service does not know is answered "unknown" without a fetch for the given seconds.
CONNECT_INSTALL_KEYS_FETCHES_PER_MINUTE = env_number("CONNECT_INSTALL_KEYS_FETCHES_PER_MINUTE", 5, minimum=1)
CONNECT_INSTALL_KEYS_UNKNOWN_SECONDS = env_number("CONNECT_INSTALL_KEYS_UNKNOWN_SECONDS", 60, minimum=1)
CONNECT_JWT_LEEWAY = env_number("CONNECT_JWT_LEEWAY", 30)
CONNECT_TENANT_CACHE_SECONDS = env_number("CONNECT_TENANT_CACHE_SECONDS", 300, minimum=1)
CONNECT_TENANT_LOCAL_SECONDS = env_number("CONNECT_TENANT_LOCAL_SECONDS", 2.0, kind=float)
# Cap of each per-process table (tenants, unknown client keys): least recently used dropped beyond it.
CONNECT_TENANT_LOCAL_MAX_ENTRIES = env_number("CONNECT_TENANT_LOCAL_MAX_ENTRIES", 10_000, minimum=1)
CONNECT_OUTBOUND_TIMEOUT = env_number("CONNECT_OUTBOUND_TIMEOUT", 10.0, minimum=0.1, kind=float)
# Tenants' baseUrl must be an Atlassian cloud site (registrations/base_urls.py); this adds domains (for a
# staging product or tests), comma-separated, e.g. "example.test".
CONNECT_EXTRA_BASE_URL_DOMAINS = env.list("CONNECT_EXTRA_BASE_URL_DOMAINS", default=[])

# --- Forge (registrations/forge_jwt.py, docs/forge.md) -------------------------------------------
try:
    # https in production: the keys fetched here decide which Forge invocations are believed.
    FORGE_JWKS_URL = check_base_url(
        "FORGE_JWKS_URL",
        env.str("FORGE_JWKS_URL", default="https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json"),
        debug=DEBUG,
    )
    # The Forge app IDs (UUIDs) whose invocation tokens are accepted: Artemis has several apps.
    FORGE_APP_IDS = parse_uuid_list("FORGE_APP_IDS", env.str("FORGE_APP_IDS", default=""))
except ConfigError as exc:
    sys.exit(f"Configuration error: {exc}")
FORGE_JWKS_TIMEOUT = env_number("FORGE_JWKS_TIMEOUT", 5.0, minimum=0.1, kind=float)
# How long a fetched key set is used before it is fetched again (an unknown kid refreshes it sooner,
# at most once a minute).
FORGE_JWKS_MAX_AGE_SECONDS = env_number("FORGE_JWKS_MAX_AGE_SECONDS", 3600, minimum=60)
# A CA bundle (file path) that the JWKS fetch trusts instead of the system's: only the tests set it, for
# their self-signed loopback server. Empty: the normal certificate store (certifi).
FORGE_JWKS_CA_BUNDLE = env.str("FORGE_JWKS_CA_BUNDLE", default="")
# The Connect-on-Forge app's ID in forge/manifest.yml (manage.py forge_manifest); default: the first of
# FORGE_APP_IDS, else a placeholder the Forge CLI replaces on `forge register`.
FORGE_MANIFEST_APP_ID = env.str("FORGE_MANIFEST_APP_ID", default="")

# --- Backups (registrations/backups.py) ---------------------------------------------------------


def storage_options(name):
    """A ``*_STORAGE_OPTIONS`` variable: a JSON object of keyword arguments for the storage class.

    Read as text so that an empty value (as in .env.example) means the default, like the others.
    """
    import json

    try:
        options = json.loads(env.str(name, default="") or "{}")
    except ValueError:
        options = None
    if not isinstance(options, dict):
        raise ConfigError(f'{name} must be a JSON object, e.g. {{"bucket_name": "artemis"}}.')
    return options


def _load_backups():
    """Backup keys, folder and storage. The backup key must differ from the field-encryption keys.

    Backups hold the tenants' shared secrets, decrypted from the field encryption and encrypted again
    with a key of their own, so that a leaked ``FERNET_KEYS`` does not also open every backup (and the
    other way round). In DEBUG a key is derived from SECRET_KEY when none is set.
    """
    from base64 import urlsafe_b64encode

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    raw = env.str("BACKUP_KEYS", default="")
    if not raw and DEBUG:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"artemis dev backup key")
        raw = urlsafe_b64encode(derived.derive(SECRET_KEY.encode())).decode()
    keys = parse_key_list("BACKUP_KEYS", require("BACKUP_KEYS", raw, debug=DEBUG), use_hkdf=False)
    if set(keys) & set(FERNET_KEYS):
        raise ConfigError("BACKUP_KEYS must not reuse a key from FERNET_KEYS; generate a separate one.")
    return {
        "keys": keys,
        "dir": Path(env.str("BACKUP_DIR", default="") or BASE_DIR / "var" / "backups"),
        "storage": env.str("BACKUP_STORAGE", default=""),
        "storage_options": storage_options("BACKUP_STORAGE_OPTIONS"),
    }


try:
    _backups = _load_backups()
except ConfigError as exc:
    sys.exit(f"Configuration error: {exc}")

# First key encrypts new backups, every key decrypts (keep a retired key until its backups are pruned).
BACKUP_KEYS = _backups["keys"]
BACKUP_DIR = _backups["dir"]
# Empty: a local folder (BACKUP_DIR). Otherwise a STORAGES alias or a storage class's dotted path,
# constructed with BACKUP_STORAGE_OPTIONS (a JSON object), e.g. storages.backends.s3.S3Storage.
BACKUP_STORAGE = _backups["storage"]
BACKUP_STORAGE_OPTIONS = _backups["storage_options"]

# --- Personal data reporting (registrations/personal_data.py) ------------------------------------
# Hours until the next report when Atlassian's answer carries no usable Cycle-Period (it recommends 7
# days), and minutes before a failed or interrupted report is due again (or Retry-After, if later).
PERSONAL_DATA_DEFAULT_CYCLE_HOURS = env_number("PERSONAL_DATA_DEFAULT_CYCLE_HOURS", 168, minimum=1)
PERSONAL_DATA_RETRY_MINUTES = env_number("PERSONAL_DATA_RETRY_MINUTES", 60, minimum=1)

# --- Rights requests: fulfilment -----------------------------------------------------------------
# Encrypted export files (dsr_requests/exports.py). The worker writes them and the web process serves
# them, so on separate machines (Heroku's dynos) they need a shared storage: EXPORT_STORAGE names one
# like BACKUP_STORAGE does (a STORAGES alias or a class path, with EXPORT_STORAGE_OPTIONS). Empty: the
# local folder EXPORT_DIR.
EXPORT_DIR = Path(env.str("EXPORT_DIR", default="") or BASE_DIR / "var" / "exports")
EXPORT_STORAGE = env.str("EXPORT_STORAGE", default="")
try:
    EXPORT_STORAGE_OPTIONS = storage_options("EXPORT_STORAGE_OPTIONS")
except ConfigError as exc:
    sys.exit(f"Configuration error: {exc}")
# Helper processes that read, decrypt and encode a large export's rights-request records while the
# worker writes the ZIP (dsr_requests/export_parallel.py; PostgreSQL only), and the record count from
# which they are used. 0: always in the worker's own process.
EXPORT_PROCESSES = env_number("EXPORT_PROCESSES", 1)
EXPORT_PARALLEL_MIN_RECORDS = env_number("EXPORT_PARALLEL_MIN_RECORDS", 10000)
# How long a copy or transfer stays downloadable.
DSR_EXPORT_VALID_DAYS = env_number("DSR_EXPORT_VALID_DAYS", 7, minimum=1)
DSR_DOWNLOAD_CODE_TTL_MINUTES = env_number("DSR_DOWNLOAD_CODE_TTL_MINUTES", 15, minimum=1)
# A fulfilment job that fails this many times goes back to staff.
DSR_FULFILMENT_MAX_FAILURES = env_number("DSR_FULFILMENT_MAX_FAILURES", 3, minimum=1)
# A running fulfilment silent this long is taken as a dead worker; dsr_resume_fulfilment queues it again.
DSR_FULFILMENT_STALE_MINUTES = env_number("DSR_FULFILMENT_STALE_MINUTES", 15)
# Seconds before a failed fulfilment attempt is tried again by the worker.
DSR_FULFILMENT_RETRY_SECONDS = env_number("DSR_FULFILMENT_RETRY_SECONDS", 60)
# dsr_purge erases the personal data of requests closed longer than this (CCPA: 24 months of records).
DSR_RETENTION_MONTHS = env_number("DSR_RETENTION_MONTHS", 24, minimum=1)
