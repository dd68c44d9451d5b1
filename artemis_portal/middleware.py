"""Request id and the one access-log line per request; a 503 when the database does not answer."""

import logging
import re
import time
import uuid

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.cache import patch_cache_control
from django.utils.translation import gettext as _

from artemis_portal.request_context import reset_request_id, set_request_id

logger = logging.getLogger("artemis.access")
db_logger = logging.getLogger("artemis.database")

# Heroku's router sends X-Request-ID; accept it only when it is a plain token so it cannot forge log lines.
SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,128}$")


class RequestIdMiddleware:
    """Give every request an id (the router's, or a new one), echo it, and log one line when done.

    The line has method, path, status and duration. It never has the query string: Connect sends
    `?jwt=` there.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = set_request_id(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            logger.info(
                "%s %s %s %.1fms",
                request.method,
                request.path,
                response.status_code,
                (time.perf_counter() - started) * 1000,
            )
            return response
        finally:
            reset_request_id(token)


# Connection refused, lost, or the server starting up / shutting down. Other database errors (a bad query,
# an integrity error) are bugs or races and stay 500s.
DATABASE_DOWN = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 30


def database_unavailable_response(request, error):
    """The 503 for a database that does not answer: a short reason, ``Retry-After``, no details.

    JSON for the Connect lifecycle callbacks and clients that ask for JSON (Atlassian retries a lifecycle
    call on a 5xx), an HTML page for people. The log line names only the error's class: the driver's
    message holds the database host and user.
    """
    db_logger.warning(
        "database unavailable (%s) on %s %s", type(error).__name__, request.method, request.path
    )
    reason = _("The service is briefly unavailable; please try again in a minute.")
    if wants_json(request):
        response = JsonResponse({"error": str(reason)}, status=503)
    else:
        response = HttpResponse(
            render_to_string("503.html", {"reason": reason}), status=503, content_type="text/html"
        )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    patch_cache_control(response, no_store=True)
    return response


LIFECYCLE_PATH = re.compile(r"^/connect/(installed|uninstalled|enabled|disabled)/?$")


def wants_json(request):
    """Whether an error for this request should be JSON: lifecycle callbacks, JSON bodies, JSON clients."""
    if LIFECYCLE_PATH.match(request.path) or request.path == "/healthz":
        return True
    if request.content_type == "application/json":
        return True
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


class DatabaseUnavailableMiddleware:
    """Turn a database that is down or restarting into a fast 503 instead of a 500 with a traceback.

    ``process_exception`` sees what views (and their templates) raise; what middleware raises (a session
    save) reaches ``artemis_portal.views.server_error``, the 500 handler, which answers the same way.
    Django closes the broken connection at the end of the request (``CONN_HEALTH_CHECKS`` checks a
    persistent one before reuse), so the next request after the restart connects afresh.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        """A 503 for connection errors; ``None`` (Django's usual handling) for anything else."""
        if isinstance(exception, DATABASE_DOWN):
            return database_unavailable_response(request, exception)
        return None
