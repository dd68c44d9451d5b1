"""Forge installations beside Connect registrations: lifecycle events, site matching, tenants, counts.

A *tenant* is a site (cloud ID / site URL) with its platforms: a Connect ``Registration``, one or more
``ForgeInstallation`` rows, or both. Neither platform is a special case of the other; they are linked by
the site they are installed on (``find_registration``, rules in docs/forge.md):

1. by cloud ID, when the Connect registration knows it (newer install payloads carry ``cloudId``);
2. else by the site's origin: ``https://<host>`` of the Forge ``siteUrl`` and of the Connect ``baseUrl``
   (Confluence's ``/wiki`` path dropped, host lower-cased).

Services take keyword-only arguments and an ``actor`` for the log line; callers have verified the FIT.
"""

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from registrations.identifiers import log_value
from registrations.models import FitFailureCount, ForgeInstallation, Registration

logger = logging.getLogger("artemis.forge")
State = ForgeInstallation.State

EVENTS = {
    "avi:forge:installed:app": State.INSTALLED,
    "avi:forge:upgraded:app": State.INSTALLED,
    "avi:forge:uninstalled:app": State.UNINSTALLED,
}


def site_origin(url):
    """``https://<host>`` of a site URL (lower-cased, no path, port or user info), or ``""``."""
    try:
        host = urlsplit(url or "").hostname
    except ValueError:
        return ""
    return f"https://{host.lower()}" if host else ""


@dataclass(frozen=True)
class EventResult:
    """Outcome of a Forge lifecycle event: ``created``, ``changed``, ``repeat`` or ``stale`` (older than
    the newest event applied, so ignored)."""

    outcome: str
    installation: ForgeInstallation


def apply_event(*, event, context, app_version="", actor):
    """Create or update the installation named by a verified lifecycle FIT; idempotent, order-proof.

    ``context`` is the ``forge_jwt.ForgeContext``. The event's time is the token's ``iat``: an event older
    than the newest one applied (``last_event_at``) changes nothing, so an ``uninstalled`` that overtook
    its ``installed`` stays uninstalled, and a replay is a ``repeat``. The row is locked while deciding,
    and a concurrent first event for the same installation is retried against the row the other created.
    """
    target = EVENTS[event]
    event_at = datetime.fromtimestamp(int(context.claims["iat"]), tz=UTC)
    try:
        with transaction.atomic():
            result = _apply_locked(event, target, event_at, context, app_version)
    except IntegrityError:
        # Another request created the row between our read and our insert: apply against its row.
        with transaction.atomic():
            result = _apply_locked(event, target, event_at, context, app_version)
    logger.info(
        "forge lifecycle %s installation=%s outcome=%s actor=%s",
        event.rsplit(":", 2)[-2],
        log_value(context.installation_id.rsplit("/", 1)[-1]),
        result.outcome,
        actor,
    )
    return result


def _apply_locked(event, target, event_at, context, app_version):
    now = timezone.now()
    row = (
        ForgeInstallation.objects.select_for_update().filter(installation_id=context.installation_id).first()
    )
    if row is None:
        row = ForgeInstallation(installation_id=context.installation_id, state=target)
        outcome = "created"
    elif event_at < row.last_event_at:
        return EventResult("stale", row)
    elif event_at == row.last_event_at and row.state == target:
        return EventResult("repeat", row)
    else:
        outcome = "changed"
    if target == State.INSTALLED and (row.state != State.INSTALLED or row.installed_at is None):
        row.installed_at = event_at
    if event == "avi:forge:upgraded:app":
        row.upgraded_at = event_at
    if target == State.UNINSTALLED:
        row.uninstalled_at = event_at
    row.state = target
    row.app_id = context.app_id
    row.environment_type = context.environment_type
    row.environment_id = context.environment_id
    row.cloud_id = context.cloud_id
    row.site_url = context.site_url or row.site_url
    row.app_version = app_version or row.app_version
    row.last_event_at = event_at
    row.updated_at = now
    row.save()
    return EventResult(outcome, row)


# --- Matching the platforms of one site ------------------------------------------------------------------


def find_registration(*, cloud_id, site_url):
    """The Connect registration of the site: by cloud ID if one knows it, else by the site's origin.

    Among several candidates (a site reinstalled under a new client key) the newest install wins.
    """
    if cloud_id:
        found = (
            Registration.objects.defer("shared_secret").filter(cloud_id=cloud_id).order_by("-installed_at")
        )
        if found:
            return found[0]
    origin = site_origin(site_url)
    if not origin:
        return None
    candidates = (
        Registration.objects.defer("shared_secret")
        .filter(base_url__istartswith=origin)
        .order_by("-installed_at")[:20]
    )
    return next((r for r in candidates if site_origin(r.base_url) == origin), None)


def link_installation(*, installation_id, actor):
    """Link a Forge installation to the Connect registration of its site (or unlink it if there is none
    any more); returns the registration or ``None``. Run by a background job after each event."""
    installation = ForgeInstallation.objects.filter(installation_id=installation_id).first()
    if installation is None:
        return None
    registration = find_registration(cloud_id=installation.cloud_id, site_url=installation.site_url)
    pk = registration.pk if registration else None
    if installation.registration_id != pk:
        ForgeInstallation.objects.filter(pk=installation.pk).update(registration_id=pk)
        logger.info(
            "forge link installation=%s client_key=%s actor=%s",
            log_value(installation_id.rsplit("/", 1)[-1]),
            log_value(registration.client_key if registration else None),
            actor,
        )
    return registration


def link_registration(*, client_key, actor):
    """Link the Forge installations of a Connect registration's site to it (after a Connect install);
    returns how many were linked."""
    registration = Registration.objects.defer("shared_secret").filter(client_key=client_key).first()
    if registration is None:
        return 0
    match = Q(site_url__iexact=site_origin(registration.base_url))
    if registration.cloud_id:
        match |= Q(cloud_id=registration.cloud_id)
    linked = ForgeInstallation.objects.filter(match).exclude(registration=registration)
    # Only where this registration is the site's newest (a stale client key must not steal the link).
    ids = [
        i.installation_id
        for i in linked
        if find_registration(cloud_id=i.cloud_id, site_url=i.site_url) == registration
    ]
    changed = ForgeInstallation.objects.filter(installation_id__in=ids).update(registration=registration)
    if changed:
        logger.info(
            "forge link client_key=%s installations=%d actor=%s", log_value(client_key), changed, actor
        )
    return changed


# --- Tenants: each site with its platforms ---------------------------------------------------------------


@dataclass
class Tenant:
    """One site and what is installed there; ``platforms`` is a list of dicts (platform, state, id, since)."""

    site_url: str
    cloud_id: str
    platforms: list = field(default_factory=list)

    @property
    def state(self):
        """``installed`` while any platform is in use there, else ``uninstalled`` (or ``disabled``)."""
        states = {p["state"] for p in self.platforms}
        if states & {"installed", "enabled"}:
            return "installed"
        return "disabled" if "disabled" in states else "uninstalled"

    @property
    def installed_at(self):
        """When the site first installed any platform."""
        dates = [p["installed_at"] for p in self.platforms if p["installed_at"]]
        return min(dates) if dates else None

    def as_dict(self):
        """What ``manage.py tenants --json`` prints: identifiers, states and dates, never a secret."""
        return {
            "site_url": self.site_url,
            "cloud_id": self.cloud_id,
            "platforms": sorted({p["platform"] for p in self.platforms}),
            "state": self.state,
            "installed_at": self.installed_at.isoformat() if self.installed_at else None,
            "installations": [
                {**p, "installed_at": p["installed_at"].isoformat() if p["installed_at"] else None}
                for p in self.platforms
            ],
        }


def list_tenants():
    """Every tenant (site) with its platforms, ordered by site URL; two queries, no secret loaded."""
    tenants, by_registration, by_site = [], {}, {}
    for reg in Registration.objects.only(
        "pk", "client_key", "base_url", "cloud_id", "state", "installed_at"
    ).order_by("installed_at"):
        origin = site_origin(reg.base_url)
        tenant = by_site.get(reg.cloud_id) or by_site.get(origin)
        if tenant is None:
            tenant = Tenant(site_url=origin, cloud_id=reg.cloud_id)
            tenants.append(tenant)
        tenant.cloud_id = tenant.cloud_id or reg.cloud_id
        tenant.platforms.append(
            {
                "platform": "connect",
                "id": reg.client_key,
                "state": reg.state,
                "installed_at": reg.installed_at,
            }
        )
        by_registration[reg.pk] = tenant
        by_site.update({key: tenant for key in (reg.cloud_id, origin) if key})
    for inst in ForgeInstallation.objects.order_by("installed_at", "pk"):
        origin = site_origin(inst.site_url)
        tenant = (
            by_registration.get(inst.registration_id) or by_site.get(inst.cloud_id) or by_site.get(origin)
        )
        if tenant is None:
            tenant = Tenant(site_url=origin, cloud_id=inst.cloud_id)
            tenants.append(tenant)
        tenant.cloud_id = tenant.cloud_id or inst.cloud_id
        tenant.site_url = tenant.site_url or origin
        tenant.platforms.append(
            {
                "platform": "forge",
                "id": inst.installation_id,
                "state": inst.state,
                "installed_at": inst.installed_at,
            }
        )
        by_site.update({key: tenant for key in (inst.cloud_id, origin) if key})
    return sorted(tenants, key=lambda t: (t.site_url, t.cloud_id))


# --- Refused tokens, counted per reason ------------------------------------------------------------------


def record_fit_failure(*, reason, day=None):
    """Add one refused FIT to today's count for ``reason``: one ``INSERT ... ON CONFLICT`` statement, as
    ``services.record_usage`` does (no read-modify-write race between workers)."""
    day = day or timezone.localdate()
    quote = connection.ops.quote_name
    table = quote(FitFailureCount._meta.db_table)
    day_col, reason_col, count_col = (quote(name) for name in ("day", "reason", "count"))
    sql = (
        f"INSERT INTO {table} ({day_col}, {reason_col}, {count_col}) VALUES (%s, %s, 1) "  # noqa: S608
        f"ON CONFLICT ({day_col}, {reason_col}) DO UPDATE SET {count_col} = {table}.{count_col} + 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datefield_value(day), reason[:40]])
