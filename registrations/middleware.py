"""Refuse a Connect token with a forged issuer before the rest of the middleware stack.

A refused Connect request used to cost what a served page costs: sessions, locale, authentication, the
second-factor wrappers, messages, axes and the URL resolver all ran before the view's decorator looked
at the token. Under a stream where a quarter of the tokens name client keys that do not exist, that
made the valid requests' share of the server fall to the forged share's (issue 19, item 2,
docs/benchmarks.md). This middleware sits right after the security and Permissions-Policy headers, before
everything else (the CSP middleware too: the refusal carries a fixed, stricter policy of its own), and
answers only one case: a request to a Connect-protected view whose HS256 token's
``iss`` names no tenant, as the tenant cache (this process, then the shared cache, then one indexed query
per key and 5 minutes) says. The answer is ``jwt.refuse_unknown_issuer``'s, the same 401, reason, headers
and log line the view's own check gives. Every other request, including every token of a real tenant in
any state, passes through untouched: the view's decorator remains the only place a token is accepted.
"""

from functools import lru_cache

from django.urls import Resolver404, get_urlconf, resolve

from registrations import jwt

REFUSAL_CSP = "default-src 'none'; frame-ancestors 'none'"
# Paths seen per URLconf; bounded so that a stream of made-up paths cannot grow the table.
PROTECTED_PATHS_CACHE = 1024


@lru_cache(maxsize=PROTECTED_PATHS_CACHE)
def _protected(urlconf, path_info):
    """Whether ``path_info`` resolves to a view marked by ``connect_jwt_required`` or the mixin."""
    try:
        match = resolve(path_info, urlconf)
    except Resolver404:
        return False
    return bool(getattr(match.func, "connect_jwt_protected", False))


def _carries_connect_token(request):
    """A cheap first look: only a request with ``Authorization: JWT ...`` or ``?jwt=`` can be refused."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        return header[:4].lower() == "jwt "
    return "jwt=" in request.META.get("QUERY_STRING", "")


class ConnectEarlyRefusalMiddleware:
    """Answer a forged-issuer Connect request with its 401 before sessions, auth and the rest run."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _carries_connect_token(request) and _protected(get_urlconf(), request.path_info):
            refusal = jwt.refuse_unknown_issuer(request)
            if refusal is not None:
                # What the CSP and clickjacking middlewares would add, fixed and at their strictest:
                # a JSON body loads nothing and is never framed.
                refusal["Content-Security-Policy"] = REFUSAL_CSP
                refusal["X-Frame-Options"] = "DENY"
                return refusal
        return self.get_response(request)
