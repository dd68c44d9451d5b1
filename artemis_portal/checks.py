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
