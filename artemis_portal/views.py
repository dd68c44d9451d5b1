"""Project-level pages: the landing page, the health check and the 500 handler."""

import sys

from django.db import DatabaseError, InterfaceError, connection
from django.http import JsonResponse
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from django.views.generic import TemplateView

from artemis_portal.middleware import DATABASE_DOWN, database_unavailable_response


class LandingView(TemplateView):
    """Say what the portal is for and point to the request form."""

    template_name = "landing.html"


@never_cache
@require_safe
def healthz(request):
    """Report whether the database answers; 503 when it does not, so the platform can route around us.

    Says nothing else about the deployment: no versions, hosts or settings.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        database = "ok"
    except (DatabaseError, InterfaceError):  # InterfaceError (connection lost) is no DatabaseError
        database = "unavailable"
    ok = database == "ok"
    return JsonResponse({"status": "ok" if ok else "error", "database": database}, status=200 if ok else 503)


def server_error(request, template_name=defaults.ERROR_500_TEMPLATE_NAME):
    """The 500 handler: a database that is down is a 503 here too, whichever layer noticed it.

    Middleware exceptions (a session save) never reach ``DatabaseUnavailableMiddleware.process_exception``;
    Django calls this handler while it still handles the exception, so ``sys.exc_info()`` names it.
    """
    error = sys.exc_info()[1]
    if isinstance(error, DATABASE_DOWN):
        return database_unavailable_response(request, error)
    return defaults.server_error(request, template_name)
