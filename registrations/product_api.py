"""Outbound calls from the app to a tenant's product REST API (Confluence), signed with a Connect JWT."""

import requests
from django.conf import settings

from registrations.jwt import sign_outbound


def call(tenant, method, path, *, params=None, json=None, timeout=None):
    """Perform ``method path`` against ``tenant``'s API and return the ``requests`` response.

    ``path`` is relative to the tenant's ``base_url`` (``/rest/api/...``). The token goes in the
    ``Authorization`` header, never the query string (where proxies and logs would keep it); its ``qsh``
    covers exactly ``params``. Redirects are not followed: they would carry the token elsewhere.
    Network errors propagate as ``requests.RequestException`` for the caller to handle.
    """
    params = params or {}
    token = sign_outbound(tenant, method, path, params)
    return requests.request(
        method.upper(),
        tenant.base_url.rstrip("/") + path,
        params=params,
        json=json,
        headers={"Authorization": f"JWT {token}", "Accept": "application/json"},
        timeout=timeout or settings.CONNECT_OUTBOUND_TIMEOUT,
        allow_redirects=False,
    )
