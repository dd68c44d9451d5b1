"""Settings for bench/connect_gunicorn.py: the real settings plus an unprotected twin of the Connect page."""

from artemis_portal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.connect_urls"
# The benchmark serves the page without collectstatic; the {% static %} tag then needs no manifest.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
