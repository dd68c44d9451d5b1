"""Every write to the Connect registry: lifecycle events, staff blocks, usage counts, key rotation.

Services take keyword-only arguments and an ``actor`` (``"atlassian"`` for lifecycle callbacks, the staff
user for admin actions) that goes into the log line; callers have verified who is asking.
"""

import logging
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.db import connection, models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from fernet_fields import EncryptedField

from registrations import erasure_ledger, tenant_cache, usage_counts
from registrations.identifiers import log_value
from registrations.models import Registration

logger = logging.getLogger("artemis.connect")
State = Registration.State

# event -> (states it may leave, state it enters, timestamp it sets). An event arriving in its own
# target state is a repeat (no change); in any other state it is out of order and ignored, e.g.
# "disabled" just after "uninstalled" must not bring an uninstalled tenant back.
TRANSITIONS = {
    "enabled": ({State.INSTALLED, State.DISABLED}, State.ENABLED, "enabled_at"),
    "disabled": ({State.INSTALLED, State.ENABLED}, State.DISABLED, "disabled_at"),
    "uninstalled": ({State.INSTALLED, State.ENABLED, State.DISABLED}, State.UNINSTALLED, "uninstalled_at"),
}


def _actor_label(actor):
    pk = getattr(actor, "pk", None)
    return f"staff:{pk}" if pk is not None else str(actor)


def install(*, payload, actor):
    """Create or update the tenant from a verified ``installed`` payload; returns ``(registration, created)``.

    Only call this after ``jwt.verify_install_token`` succeeded: it is what allows a reinstall to replace
    the shared secret. A tenant that was uninstalled becomes installed again (same row, so its history
    stays); a disabled or enabled one keeps its state, as Atlassian also sends ``installed`` on upgrades.
    """
    now = timezone.now()
    fields = {
        "shared_secret": payload.shared_secret,
        "base_url": payload.base_url,
        "display_url": payload.display_url,
        "product_type": payload.product_type,
        "description": payload.description,
        "service_entitlement_number": payload.service_entitlement_number,
        "plugins_version": payload.plugins_version,
        "server_version": payload.server_version,
        "oauth_client_id": payload.oauth_client_id,
        "updated_at": now,
    }
    if payload.cloud_id:  # older payloads lack it: keep what an earlier install said
        fields["cloud_id"] = payload.cloud_id
    with transaction.atomic():
        registration, created = Registration.objects.select_for_update().get_or_create(
            client_key=payload.client_key,
            defaults={**fields, "state": State.INSTALLED, "installed_at": now},
        )
        if not created:
            for name, value in fields.items():
                setattr(registration, name, value)
            if registration.state == State.UNINSTALLED:
                registration.state = State.INSTALLED
                registration.installed_at = now
            registration.save()
        tenant_cache.forget(payload.client_key)
    logger.info(
        "connect lifecycle installed client_key=%s created=%s actor=%s",
        log_value(payload.client_key),
        created,
        _actor_label(actor),
    )
    return registration, created


@dataclass(frozen=True)
class EventResult:
    """Outcome of a state event: ``changed``, ``repeat`` (already there), ``ignored`` or ``unknown``."""

    outcome: str
    state: str | None


def apply_event(*, client_key, event, actor):
    """Apply ``enabled``, ``disabled`` or ``uninstalled`` to a tenant, idempotently and race-free.

    The change is one conditional UPDATE (``WHERE state IN (...)``), so two events arriving together
    cannot both read the old state and overwrite each other, on SQLite or PostgreSQL.
    """
    sources, target, stamp = TRANSITIONS[event]
    now = timezone.now()
    with transaction.atomic():
        changed = Registration.objects.filter(client_key=client_key, state__in=sources).update(
            state=target, updated_at=now, **{stamp: now}
        )
        state = (
            target
            if changed
            else (Registration.objects.filter(client_key=client_key).values_list("state", flat=True).first())
        )
        if changed:
            tenant_cache.forget(client_key)
        # A site whose erasure waited for the app to be uninstalled (erasure_ledger): its record goes now.
        erased = state == State.UNINSTALLED and erasure_ledger.complete_pending_site(
            client_key=client_key, actor=actor
        )
    if changed:
        outcome = "changed"
    elif state is None:
        outcome = "unknown"
    else:
        outcome = "repeat" if state == target else "ignored"
    logger.info(
        "connect lifecycle %s client_key=%s outcome=%s erased=%s actor=%s",
        event,
        log_value(client_key),
        outcome,
        erased,
        _actor_label(actor),
    )
    return EventResult(outcome=outcome, state=state)


def block(*, registration, actor):
    """Staff switch a tenant off in our registry (its requests get 401) without telling Atlassian.

    A flag beside the lifecycle state, not the ``disabled`` state itself: Atlassian's next ``enabled``
    callback (an admin toggling the app, an upgrade) must not quietly undo it. Returns whether it changed.
    """
    return _set_block(registration=registration, actor=actor, blocked_at=timezone.now())


def unblock(*, registration, actor):
    """Undo ``block``: the tenant's requests are served again if Atlassian has it enabled."""
    return _set_block(registration=registration, actor=actor, blocked_at=None)


class SiteErasure(models.TextChoices):
    """What ``erase_site`` did with a site's installation record."""

    DELETED = "deleted", _("deleted")
    PENDING = "pending", _("kept until the app is uninstalled")
    ABSENT = "absent", _("not held")


def erase_site(*, client_key, reference="", actor):
    """Erase a site's installation record for a rights request, and record it in the erasure ledger.

    An uninstalled site's record is deleted. An installed one stays, because Atlassian signs the site's
    requests with the shared secret it holds and the app could not authenticate the site without it;
    the ledger marks it pending and the site's ``uninstalled`` callback deletes it. A site with no record
    (deleted earlier) is still recorded: a backup may hold it. The row is locked first, so an uninstall
    arriving at the same moment either comes before (the record is deleted here) or after (it finds the
    pending entry and deletes the record then). Returns ``(SiteErasure, registration or None)``.
    """
    with transaction.atomic():
        registration = (
            Registration.objects.select_for_update()
            .defer("shared_secret")
            .filter(client_key=client_key)
            .first()
        )
        if registration is None:
            outcome = SiteErasure.ABSENT
        elif registration.state == State.UNINSTALLED:
            registration.delete()
            tenant_cache.forget(client_key)
            outcome = SiteErasure.DELETED
        else:
            outcome = SiteErasure.PENDING
        pending = outcome == SiteErasure.PENDING
        erasure_ledger.record_erasure(
            client_keys=[] if pending else [client_key],
            pending_client_keys=[client_key] if pending else [],
            reference=reference,
            actor=actor,
        )
    logger.info(
        "connect erase client_key=%s outcome=%s actor=%s",
        log_value(client_key),
        outcome.value,
        _actor_label(actor),
    )
    return outcome, registration


def _set_block(*, registration, actor, blocked_at):
    with transaction.atomic():
        changed = bool(
            Registration.objects.filter(pk=registration.pk, blocked_at__isnull=blocked_at is not None).update(
                blocked_at=blocked_at, updated_at=timezone.now()
            )
        )
        if changed:
            tenant_cache.forget(registration.client_key)
    logger.info(
        "connect %s client_key=%s changed=%s actor=%s",
        "block" if blocked_at else "unblock",
        log_value(registration.client_key),
        changed,
        _actor_label(actor),
    )
    return changed


def record_usage(*, module, day=None):
    """Count one use of ``module`` today (anonymized: day, module, count) without slowing the request.

    With the production Redis cache this is one atomic ``HINCRBY`` and no database round trip; the
    ``flush_usage_counts`` command moves the counts into ``UsageCount`` exactly once. With a per-process
    cache it is one ``INSERT ... ON CONFLICT`` statement. See ``usage_counts`` for why and how.
    """
    usage_counts.record(module=module, day=day)


def usage_counted(*, module):
    """A context manager counting one use of ``module`` around a view: ``record_usage``, but the count is
    sent to Redis as the block starts and its reply read as it ends, so the page renders meanwhile
    instead of waiting for the round trip (``usage_counts.counting``)."""
    return usage_counts.counting(module=module)


def flush_usage_counts(*, actor):
    """Move the uses buffered in Redis into the daily ``UsageCount`` rows; returns a ``FlushResult``."""
    return usage_counts.flush(actor=_actor_label(actor))


# --- Fernet key rotation ----------------------------------------------------------------------------


def encrypted_fields():
    """Every ``(model, [encrypted fields])`` in the project, found through the app registry.

    Discovery (rather than a list) means a field another app adds later is rotated too.
    """
    found = []
    for model in apps.get_models():
        fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedField)]
        if fields:
            found.append((model, fields))
    return found


class UndecryptableValue(Exception):
    """A stored value decrypts with none of ``FERNET_KEYS`` (a key was removed too early)."""


def reencrypt_model(*, model, fields, batch_size, progress, actor):
    """Re-encrypt ``fields`` of every ``model`` row under the first key in ``FERNET_KEYS``.

    Works on the stored ciphertext (``MultiFernet.rotate``), so no plaintext is built. Each batch is one
    transaction and every UPDATE is conditional on the ciphertext it read: a concurrent write (a reinstall
    mid-rotation) wins and is left alone. Values already under the first key are skipped, so an
    interrupted run simply continues when run again. ``progress(done, rotated, total)`` follows each batch.
    """
    primary = Fernet(fields[0].fernet_keys[0])
    rotator = MultiFernet([Fernet(key) for key in fields[0].fernet_keys])
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    pk = quote(model._meta.pk.column)
    columns = [quote(f.column) for f in fields]
    select = f"SELECT {pk}, {', '.join(columns)} FROM {table}"  # noqa: S608
    order = f" ORDER BY {pk} LIMIT %s"
    total = model._default_manager.count()
    done = rotated = 0
    last_pk = None
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            if last_pk is None:
                cursor.execute(select + order, [batch_size])
            else:
                cursor.execute(f"{select} WHERE {pk} > %s{order}", [last_pk, batch_size])
            rows = cursor.fetchall()
            for row in rows:
                for field, column, stored in zip(fields, columns, row[1:], strict=True):
                    if stored is None:
                        continue
                    token = bytes(stored)
                    if _rotate_value(cursor, table, pk, column, row[0], token, primary, rotator, field):
                        rotated += 1
        if not rows:
            break
        done += len(rows)
        last_pk = rows[-1][0]
        progress(done, rotated, total)
    logger.info(
        "fernet keys rotated model=%s rows=%s values=%s actor=%s",
        model._meta.label,
        done,
        rotated,
        _actor_label(actor),
    )
    return done, rotated


def _rotate_value(cursor, table, pk, column, row_pk, token, primary, rotator, field):
    """Rewrite one stored value under the primary key unless it already is; True if rewritten."""
    try:
        primary.decrypt(token)
        return False
    except InvalidToken:
        pass
    try:
        new_token = rotator.rotate(token)
    except InvalidToken:
        raise UndecryptableValue(
            f"{field.model._meta.label}.{field.name} row {row_pk} decrypts with none of FERNET_KEYS"
        ) from None
    cursor.execute(
        f"UPDATE {table} SET {column} = %s WHERE {pk} = %s AND {column} = %s",  # noqa: S608
        [connection.Database.Binary(new_token), row_pk, connection.Database.Binary(token)],
    )
    return cursor.rowcount == 1
