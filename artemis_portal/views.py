"""Project-level pages: the landing page and the health check."""

from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from django.views.generic import TemplateView


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
    except DatabaseError:
        database = "unavailable"
    ok = database == "ok"
    return JsonResponse({"status": "ok" if ok else "error", "database": database}, status=200 if ok else 503)
