"""Request id and the one access-log line per request."""

import logging
import re
import time
import uuid

from artemis_portal.request_context import reset_request_id, set_request_id

logger = logging.getLogger("artemis.access")

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
