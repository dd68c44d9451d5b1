"""Signed lifecycle tokens work once (SECURITY.md, "Security round two", item 2).

Atlassian's signed install token covers the request's method, path and query (``qsh``), not its body.
Without this module a token captured once (a proxy log, a misdirected callback) could be replayed with
another body, another shared secret or another ``baseUrl``, until its ``exp``. ``spend`` records each
accepted token and refuses a second use; the record lives until the token's ``exp`` (plus the clock
leeway), after which the token is refused as expired anyway, so the record can go.
"""

import hashlib
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from registrations import services
from registrations.models import InstallTokenUse

MAX_JTI_LENGTH = 200
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)


class TokenReplayed(Exception):
    """The signed token was already used once."""


@sensitive_variables("token")
def token_key(*, token, claims):
    """SHA-256 (hex) naming the token: of its issuer and ``jti`` when it has a usable one, else of the
    whole token (two different tokens never share a key, a replayed one always does)."""
    jti = claims.get("jti")
    if isinstance(jti, str) and 0 < len(jti) <= MAX_JTI_LENGTH:
        material = f"jti\x00{claims.get('iss')}\x00{jti}"
    else:
        material = f"token\x00{token}"
    return hashlib.sha256(material.encode()).hexdigest()


@sensitive_variables("token")
def spend(*, token, claims, now=None):
    """Record a verified signed token as used; raises ``TokenReplayed`` if it was used before.

    Call inside the transaction that acts on the token, so a failed action leaves the token unspent.
    Deletes the records of tokens that have expired on the way (installs are rare; this keeps the table
    to the tokens of the last few minutes without a scheduled job).
    """
    now = now or timezone.now()
    try:
        expires_at = datetime.fromtimestamp(claims["exp"], tz=UTC) + timedelta(
            seconds=settings.CONNECT_JWT_LEEWAY
        )
    except (OverflowError, ValueError, OSError):  # an exp beyond the calendar: keep the record for good
        expires_at = FOREVER
    InstallTokenUse.objects.filter(expires_at__lt=now).delete()
    try:
        with transaction.atomic():
            InstallTokenUse.objects.create(
                token_hash=token_key(token=token, claims=claims), expires_at=expires_at, used_at=now
            )
    except IntegrityError:
        raise TokenReplayed from None


@sensitive_variables("token", "payload")
def apply_lifecycle(*, payload, token, signed_claims, actor):
    """Apply a verified lifecycle callback; a signed one (``signed_claims`` set) spends its token first.

    One transaction: a second use of the token raises ``TokenReplayed`` and changes nothing, and an event
    that fails leaves its token unspent for Atlassian's retry.
    """
    with transaction.atomic():
        if signed_claims is not None:
            spend(token=token, claims=signed_claims)
        if payload.event == "installed":
            services.install(payload=payload, actor=actor)
        else:
            services.apply_event(client_key=payload.client_key, event=payload.event, actor=actor)
