"""Deployment checks of our own, run by ``manage.py check --deploy``."""

from django.conf import settings
from django.core.checks import Tags, Warning, register

PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


@register(Tags.caches, deploy=True)
def shared_cache_check(app_configs, **kwargs):
    """Warn when production runs on a cache that each process keeps to itself.

    Rate limits, the Connect tenant cache's invalidation after a lifecycle change, and django-axes-style
    counters all assume one cache seen by every gunicorn worker and dyno. With a per-process cache each
    worker counts on its own and a disabled site can stay cached in the others. Not an error, so a
    single-process deployment can still start; ``check --deploy`` says so.
    """
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if settings.DEBUG or backend not in PER_PROCESS_CACHES:
        return []
    return [
        Warning(
            "CACHE_URL is a per-process cache: rate limits and tenant-cache invalidation do not reach "
            "other processes.",
            hint="Set CACHE_URL to a shared cache, e.g. redis://host:6379/0.",
            id="artemis.W001",
        )
    ]


@register(deploy=True)
def production_defaults_check(app_configs, **kwargs):
    """Warn about development defaults that are unsafe once real people's requests arrive.

    - The console email backend prints whole emails (addresses, names, confirmation and status links) to
      stdout, past the log filter.
    - The immediate task backend sends email and builds exports inside web requests, so a slow SMTP
      server or a large export holds a gunicorn worker; production runs ``db_worker``.
    - A blind-index key derived from ``SECRET_KEY`` means rotating ``SECRET_KEY`` silently stops every
      earlier request being found by email (search, lost link, erasure of earlier requests), and the
      erasure ledger's hashes matching what was erased (a restore would bring erased sites back).
    - Exports in a local folder while a separate worker builds them: on Heroku the worker dyno's disk is
      not the web dyno's, so no download would find its file.
    - Backups in a local folder: on Heroku a dyno's disk is wiped when it restarts (daily), and a
      scheduler's one-off dyno's when it ends, so the backups would not be there when needed.
    A deployment with a volume shared by every process may ignore the last two.
    """
    if settings.DEBUG:
        return []
    found = []
    if settings.EMAIL_BACKEND in (
        "django.core.mail.backends.console.EmailBackend",
        "django.core.mail.backends.filebased.EmailBackend",
    ):
        found.append(
            Warning(
                "EMAIL_URL prints emails instead of sending them; they hold personal data and links.",
                hint="Set EMAIL_URL to your SMTP server, e.g. smtp+tls://user:password@host:587.",
                id="artemis.W002",
            )
        )
    if settings.TASKS["default"]["BACKEND"].endswith("ImmediateBackend"):
        found.append(
            Warning(
                "TASKS_BACKEND is immediate: emails and exports run inside web requests.",
                hint="Set TASKS_BACKEND=database and run the Procfile's worker (manage.py db_worker).",
                id="artemis.W003",
            )
        )
    if not settings.DSR_BLIND_INDEX_KEY:
        found.append(
            Warning(
                "DSR_BLIND_INDEX_KEY is not set, so it is derived from SECRET_KEY: rotating SECRET_KEY would "
                "stop earlier requests being found by email, and the erasure ledger matching erased sites.",
                hint="Set DSR_BLIND_INDEX_KEY to its own random value (at least 32 characters) and keep it.",
                id="artemis.W004",
            )
        )
    if not settings.EXPORT_STORAGE and not settings.TASKS["default"]["BACKEND"].endswith("ImmediateBackend"):
        found.append(
            Warning(
                "EXPORT_STORAGE is not set: the worker writes exports to its local EXPORT_DIR, which the "
                "web process on another machine cannot read.",
                hint="Set EXPORT_STORAGE (e.g. storages.backends.s3.S3Storage with EXPORT_STORAGE_OPTIONS), "
                "or make EXPORT_DIR a volume every process shares.",
                id="artemis.W005",
            )
        )
    if not settings.BACKUP_STORAGE:
        found.append(
            Warning(
                "BACKUP_STORAGE is not set: backups go to the local BACKUP_DIR, which is lost with the "
                "machine's disk.",
                hint="Set BACKUP_STORAGE (e.g. storages.backends.s3.S3Storage with BACKUP_STORAGE_OPTIONS), "
                "or make BACKUP_DIR a persistent volume.",
                id="artemis.W006",
            )
        )
    return found


@register(deploy=True)
def client_ip_check(app_configs, **kwargs):
    """Warn when production has not chosen how to find the client's IP (security review, round two).

    Rate limits, the login lockout and the audit key on the client IP (``dsr_requests.ratelimit.client_ip``
    and ``security.audit.client_ip``). Left at its default, ``DSR_BEHIND_PROXY`` is off and the IP is
    ``REMOTE_ADDR``: behind Heroku's router (or any load balancer) that is the router's address, so every
    visitor shares one rate-limit budget and one lockout counter, and one person can lock everyone out.
    Switched on where clients connect directly, the IP is whatever ``X-Forwarded-For`` a client sends, so
    each request can claim a fresh IP and escape the limits. Neither default is safe everywhere, so the
    choice must be made explicitly; either value silences the warning.
    """
    if settings.DEBUG or getattr(settings, "DSR_BEHIND_PROXY_CHOSEN", True):
        return []
    return [
        Warning(
            "DSR_BEHIND_PROXY is not set, so rate limits, lockouts and the audit take the client IP from "
            "REMOTE_ADDR. Behind a proxy (Heroku's router) that is the proxy's address: every visitor "
            "shares one rate-limit budget and one lockout counter.",
            hint="Set DSR_BEHIND_PROXY=1 behind exactly one proxy that appends to X-Forwarded-For (the "
            "last hop is then the client), or DSR_BEHIND_PROXY=0 if clients connect to gunicorn directly.",
            id="artemis.W007",
        )
    ]
