"""Template context every page shares."""

from django.conf import settings


def portal(request):
    """The promises the pages quote, from the settings that keep them (never a number typed in a template)."""
    return {"working_days": settings.DSR_WORKING_DAYS}
