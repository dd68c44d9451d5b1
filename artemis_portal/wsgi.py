"""WSGI entry point for gunicorn (see Procfile)."""

import logging
import os

from django.core.exceptions import BadRequest, SuspiciousOperation
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artemis_portal.settings")

logger = logging.getLogger("artemis.access")


class RefuseUnparsableRequests:
    """Answer 400 when Django cannot even build the request object, instead of letting gunicorn send a 500.

    Django turns a malformed request into a 400 once its handler runs, but building ``WSGIRequest`` happens
    before that: a query string with more than ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` fields together with a
    ``Content-Type`` that names a charset makes the constructor parse the query (the ``encoding`` setter
    checks ``hasattr(self, "GET")``) and raise ``TooManyFieldsSent`` out of the WSGI call. Found while
    fuzzing (the malformed-input matrix in tests/test_wsgi.py sends such requests to ``application``).
    """

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        try:
            return self.app(environ, start_response)
        except (SuspiciousOperation, BadRequest) as error:
            # Nothing was sent yet: the exception came from building the request, before any response.
            logger.warning(
                "%s %s 400 refused before routing (%s)",
                environ.get("REQUEST_METHOD", "-")[:16],
                environ.get("PATH_INFO", "-")[:200],
                type(error).__name__,
            )
            body = b"Bad Request\n"
            start_response(
                "400 Bad Request",
                [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
            )
            return [body]


application = RefuseUnparsableRequests(get_wsgi_application())
