"""Validation of lifecycle callback bodies.

The signed-install JWT covers the method, path and query but not the body, so every field we keep is
checked here: types (JSON numbers or lists are not strings), lengths (the columns' limits), characters
(no NUL or control characters, which PostgreSQL rejects and logs should never carry) and URLs (https
only). Fields we do not keep are ignored.
"""

import json
import re
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.utils.translation import gettext_lazy as _

from registrations import base_urls

# Control characters, and lone surrogates (valid in JSON, not encodable for any database).
CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
PRODUCT_TYPE = re.compile(r"[a-z][a-z0-9_-]{0,49}")
CLOUD_ID = re.compile(r"[A-Za-z0-9-]{1,100}")
MIN_SECRET_LENGTH = 32  # HS256 keys shorter than the hash output are weak; PyJWT warns about them
_https = URLValidator(schemes=["https"])


class PayloadError(Exception):
    """The body is not a valid lifecycle payload; ``message`` says why, for a 400."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class LifecyclePayload:
    """The fields of an Atlassian lifecycle body that the registry keeps."""

    event: str
    client_key: str
    shared_secret: str = field(default="", repr=False)
    base_url: str = ""
    display_url: str = ""
    product_type: str = ""
    description: str = ""
    service_entitlement_number: str = ""
    plugins_version: str = ""
    server_version: str = ""
    oauth_client_id: str = ""
    cloud_id: str = ""


def _text(body, name, *, max_length, required=False, min_length=0):
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise PayloadError(_("'%s' is required.") % name)
        return ""
    if not isinstance(value, str):
        raise PayloadError(_("'%s' must be a string.") % name)
    if CONTROL.search(value):
        raise PayloadError(_("'%s' contains control characters.") % name)
    if not min_length <= len(value) <= max_length:
        raise PayloadError(
            _("'%(name)s' must be %(min)s to %(max)s characters.")
            % {"name": name, "min": max(min_length, 1), "max": max_length}
        )
    return value


def _https_url(body, name, *, required):
    value = _text(body, name, max_length=500, required=required)
    if value:
        try:
            _https(value)
        except ValidationError:
            raise PayloadError(_("'%s' must be an https URL.") % name) from None
    return value


def _site_url(body, name):
    """The tenant's site: an Atlassian cloud URL only (``base_urls``), as it reaches a CSP header."""
    value = _text(body, name, max_length=base_urls.MAX_LENGTH, required=True)
    if not base_urls.is_valid(value):
        raise PayloadError(
            _("'%s' must be the https URL of an Atlassian cloud site, without user info or port.") % name
        )
    return value


def parse(raw_body, *, event):
    """Parse and validate the JSON body of the ``event`` callback; raises ``PayloadError``.

    ``installed`` must carry everything a registration needs; the other events only need to say which
    tenant and app they are about.
    """
    try:
        body = json.loads(raw_body)
    except (ValueError, RecursionError):
        raise PayloadError(_("The body must be JSON.")) from None
    if not isinstance(body, dict):
        raise PayloadError(_("The body must be a JSON object."))
    if _text(body, "key", max_length=255, required=True) != settings.CONNECT_APP_KEY:
        raise PayloadError(_("'key' is not this app's key."))
    if _text(body, "eventType", max_length=50, required=True) != event:
        raise PayloadError(_("'eventType' does not match this callback."))
    client_key = _text(body, "clientKey", max_length=255, required=True)
    if event != "installed":
        return LifecyclePayload(event=event, client_key=client_key)
    product_type = _text(body, "productType", max_length=50, required=True)
    if not PRODUCT_TYPE.fullmatch(product_type):
        raise PayloadError(_("'productType' is not a product name."))
    return LifecyclePayload(
        event=event,
        client_key=client_key,
        shared_secret=_text(
            body, "sharedSecret", max_length=1000, required=True, min_length=MIN_SECRET_LENGTH
        ),
        base_url=_site_url(body, "baseUrl"),
        display_url=_https_url(body, "displayUrl", required=False),
        product_type=product_type,
        description=_text(body, "description", max_length=500),
        service_entitlement_number=_text(body, "serviceEntitlementNumber", max_length=100),
        plugins_version=_text(body, "pluginsVersion", max_length=100),
        server_version=_text(body, "serverVersion", max_length=100),
        oauth_client_id=_text(body, "oauthClientId", max_length=255),
        cloud_id=_cloud_id(body),
    )


def _cloud_id(body):
    """``cloudId`` (newer install payloads carry it): links Forge installations of the same site.

    Only a hint for that link, so a value of another shape is ignored rather than failing the install.
    """
    value = body.get("cloudId")
    return value if isinstance(value, str) and CLOUD_ID.fullmatch(value) else ""
