"""Tenant base URLs: only Atlassian's cloud sites, and only their origin reaches a response header.

A signed install's body is not signed (only the method, path and query are), so ``baseUrl`` is whatever
the sender wrote. It ends up in the ``frame-ancestors`` directive of every Connect page and in the URLs the
portal calls, so it is held to the shape of an Atlassian cloud site (SECURITY.md, "Security round two",
items 2 and 5): ``https`` only, a host under one of Atlassian's cloud domains (``CONNECT_BASE_URL_DOMAINS``
plus ``CONNECT_EXTRA_BASE_URL_DOMAINS`` for tests and staging), no user info, no port, no characters that
do not belong in a host name, and at most a plain path (Confluence's ``/wiki``) with no query or fragment.
"""

import re

from django.conf import settings

# Atlassian's cloud product domains (developer.atlassian.com, "Atlassian cloud domains and IP ranges"):
# production sites, Jira's older sites, and the staging/developer environments.
CONNECT_BASE_URL_DOMAINS = ("atlassian.net", "jira.com", "jira-dev.com", "atlassian-dev.net")

# One DNS label: letters, digits and inner hyphens, at most 63 characters (RFC 1035 section 2.3.1).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_URL = re.compile(
    rf"https://(?P<host>(?:{_LABEL}\.)+{_LABEL})(?P<path>(?:/[A-Za-z0-9._~-]+)*/?)",
)
MAX_LENGTH = 255


class InvalidBaseUrl(ValueError):
    """The value is not the URL of an Atlassian cloud site."""


def allowed_domains():
    """The domains a tenant's site may be under: Atlassian's, plus any the settings add."""
    extra = tuple(getattr(settings, "CONNECT_EXTRA_BASE_URL_DOMAINS", ()) or ())
    return CONNECT_BASE_URL_DOMAINS + tuple(domain.lower().strip(".") for domain in extra)


def parse(value):
    """``(origin, path)`` of a valid tenant base URL; raises ``InvalidBaseUrl`` for anything else.

    The check is one anchored regular expression over the whole string (not ``urlsplit``, which accepts
    and quietly reinterprets ``user@``, ``:port``, ``;``, spaces, backslashes and percent-escapes), and
    the host must be a strict subdomain of an allowed domain.
    """
    if not isinstance(value, str) or len(value) > MAX_LENGTH:
        raise InvalidBaseUrl("not a string of a sensible length")
    match = _URL.fullmatch(value)
    if match is None:
        raise InvalidBaseUrl("not an https URL with a plain host and path")
    host = match["host"]
    if not any(host.endswith("." + domain) for domain in allowed_domains()):
        raise InvalidBaseUrl("not an Atlassian cloud site")
    return f"https://{host}", match["path"]


def is_valid(value):
    """Whether ``value`` is a tenant base URL ``parse`` accepts."""
    try:
        parse(value)
    except InvalidBaseUrl:
        return False
    return True


def origin(value):
    """The ``https://host`` origin of a valid base URL, or ``None``: the only form that reaches a header."""
    try:
        return parse(value)[0]
    except InvalidBaseUrl:
        return None
