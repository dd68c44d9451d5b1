"""The erasure ledger: what data subjects' erasures removed, so that a restored backup cannot bring it back.

Backups of registrations are kept up to 12 months (docs/operations.md). A restore of one taken before an
erasure would put the erased site's record back, so every erasure of a rights request records the
identifiers it removed here, and ``restore_registrations`` re-applies the ledger in the transaction that
loads the backup (GDPR Art. 17; the ICO's "put beyond use"; CCPA regs §7022(d): delete when the backup is
next restored).

An entry holds no personal data: the kind of identifier, an HMAC-SHA256 of it under a key derived from the
settings (``artemis_portal.keys``), a fingerprint of that key, when it was erased, and the reference of
the request that erased it. The hash cannot be turned back into the identifier; it only matches the same
identifier, hashed again with the same key.

What each kind is for:

- ``client_key``: a site's installation record. Deleted when the site had uninstalled the app; otherwise
  the record must stay (Atlassian signs the site's requests with its shared secret, and the app could not
  authenticate the site without it), so the entry is ``pending`` and the site's ``uninstalled`` callback
  deletes the record (``complete_pending_site``). A restore deletes restored records the ledger names.
- ``account_id``, ``email_hash``: an Atlassian account ID and an email's blind-index value that a rights
  request erased. Registration backups hold neither (their rows have no account ID or email), so a restore
  has nothing of these kinds to erase again; they are recorded so the ledger is the one list of what was
  erased, for any store that is restored later.

Registrations may not import rights requests, so the callers pass plain identifiers.
"""

import dataclasses
import hashlib
import hmac
import logging

from django.db import transaction
from django.utils import timezone

from artemis_portal.keys import derived_key
from registrations import tenant_cache
from registrations.models import ErasureLedgerEntry, Registration

logger = logging.getLogger("artemis.connect")
Kind = ErasureLedgerEntry.Kind
KEY_LABEL = "artemis.erasure-ledger"


def _key():
    return derived_key(KEY_LABEL)


def ledger_hash(kind, value, *, key=None):
    """HMAC-SHA256 (hex) of one identifier of ``kind``; the kind is hashed too, so kinds never collide."""
    return hmac.new(key or _key(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def key_fingerprint():
    """A short fingerprint of the ledger's key (not the key): tells which key made an entry's hash."""
    return hmac.new(_key(), b"fingerprint", hashlib.sha256).hexdigest()[:16]


def _actor_label(actor):
    pk = getattr(actor, "pk", None)
    return f"staff:{pk}" if pk is not None else str(actor)


def record_erasure(
    *, client_keys=(), pending_client_keys=(), account_ids=(), email_hashes=(), reference="", actor
):
    """Record identifiers an erasure removed; returns how many entries were written or changed.

    ``client_keys``: sites whose record was deleted (or was not held at all: a backup may still hold
    it). ``pending_client_keys``: sites whose record stays until the app is uninstalled there. Recording
    an identifier again moves its entry to now and to ``reference``, so a later erasure of a site that
    was reinstalled covers the newer record too. Empty values are skipped. Call it in the transaction
    that erases, so the ledger and the erasure commit together.
    """
    now = timezone.now()
    fingerprint = key_fingerprint()
    wanted = {}
    for kind, values, pending in (
        (Kind.CLIENT_KEY, client_keys, False),
        (Kind.CLIENT_KEY, pending_client_keys, True),
        (Kind.ACCOUNT_ID, account_ids, False),
        (Kind.EMAIL_HASH, email_hashes, False),
    ):
        for value in values:
            if value:
                # A site both deleted and pending in one call: deleted wins (nothing is left to wait for).
                key = (kind, ledger_hash(kind, value))
                wanted[key] = wanted.get(key, True) and pending
    with transaction.atomic():
        for (kind, key_hash), pending in wanted.items():
            ErasureLedgerEntry.objects.update_or_create(
                kind=kind,
                key_hash=key_hash,
                defaults={
                    "key_id": fingerprint,
                    "erased_at": now,
                    "pending": pending,
                    "reference": reference,
                },
            )
    if wanted:
        logger.info(
            "erasure ledger: %d entries recorded (%d pending) for %s by %s",
            len(wanted),
            sum(wanted.values()),
            reference or "-",
            _actor_label(actor),
        )
    return len(wanted)


def complete_pending_site(*, client_key, actor):
    """Delete an uninstalled site's record if the ledger has it pending, and mark the entry done.

    Called by the ``uninstalled`` lifecycle event in its transaction. Returns whether a record was
    deleted. Only an uninstalled row goes: the condition is in the DELETE itself.
    """
    with transaction.atomic():
        entry = (
            ErasureLedgerEntry.objects.select_for_update()
            .filter(kind=Kind.CLIENT_KEY, key_hash=ledger_hash(Kind.CLIENT_KEY, client_key), pending=True)
            .first()
        )
        if entry is None:
            return False
        deleted, _ = Registration.objects.filter(
            client_key=client_key, state=Registration.State.UNINSTALLED
        ).delete()
        if not deleted:
            return False
        entry.pending = False
        entry.erased_at = timezone.now()
        entry.save(update_fields=["pending", "erased_at"])
        tenant_cache.forget(client_key)
    logger.info("erasure ledger: pending site record deleted on uninstall by %s", _actor_label(actor))
    return True


def site_erasure_for(*, reference):
    """The site erasure a request recorded (``reference``), or None: for staff's view of the request."""
    if not reference:
        return None
    return ErasureLedgerEntry.objects.filter(kind=Kind.CLIENT_KEY, reference=reference).first()


def entries_under_another_key():
    """How many entries were hashed under a key no longer configured: they can no longer be matched."""
    return ErasureLedgerEntry.objects.exclude(key_id=key_fingerprint()).count()


# --- Re-applying the ledger ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RestoredRow:
    """A registration as it stands (or, in a dry run, would stand) after a restore."""

    client_key: str
    state: str
    installed_at: object


@dataclasses.dataclass
class ReapplyPlan:
    """Which restored registrations the ledger erases again, and which entries that completes."""

    erase: set = dataclasses.field(default_factory=set)
    complete: list = dataclasses.field(default_factory=list)
    kept_pending: int = 0
    reinstalled_since: int = 0


def plan_reapply(rows):
    """Decide, for restored registrations, which the ledger erases again (one query for the batch).

    - Erased site (entry done): the record goes, unless it was installed after the erasure (the site
      installed the app again since: a new record, held lawfully).
    - Pending site (the app was still installed when erasure was asked): the record stays while the
      app is installed; a restored record that is uninstalled goes, and the entry is done.
    """
    plan = ReapplyPlan()
    key = _key()
    by_hash = {ledger_hash(Kind.CLIENT_KEY, row.client_key, key=key): row for row in rows}
    if not by_hash:
        return plan
    entries = ErasureLedgerEntry.objects.filter(
        kind=Kind.CLIENT_KEY, key_hash__in=list(by_hash), key_id=key_fingerprint()
    )
    for entry in entries:
        row = by_hash[entry.key_hash]
        if entry.pending:
            if row.state == Registration.State.UNINSTALLED:
                plan.erase.add(row.client_key)
                plan.complete.append(entry.pk)
            else:
                plan.kept_pending += 1
        elif row.installed_at is not None and row.installed_at > entry.erased_at:
            plan.reinstalled_since += 1
        else:
            plan.erase.add(row.client_key)
    return plan


def apply_plan(plan):
    """Delete the registrations a plan erases again and complete its pending entries; returns the count.

    The tenant cache is cleared after the commit, so a cached copy of an erased site is not served.
    """
    if not plan.erase:
        return 0
    keys = sorted(plan.erase)
    deleted, _ = Registration.objects.filter(client_key__in=keys).delete()
    ErasureLedgerEntry.objects.filter(pk__in=plan.complete).update(pending=False, erased_at=timezone.now())
    transaction.on_commit(lambda: [tenant_cache.forget(key) for key in keys])
    return deleted


@dataclasses.dataclass(frozen=True)
class ReapplyResult:
    """What re-applying the ledger to the whole registry did (or, in a dry run, would do)."""

    erased_again: int
    kept_pending: int
    reinstalled_since: int
    other_key_entries: int


def reapply_erasure_ledger(*, actor, dry_run=False, batch_size=1000):
    """Re-apply the ledger to every registration in the database, in one transaction; returns counts.

    ``restore_registrations`` applies the ledger batch by batch as it loads a backup; this is the same
    rule over the whole table, for a registry brought back by other means while the ledger's own table
    stayed current (the registrations table alone restored with ``pg_restore -t``, say). Batches by
    primary key, so memory holds one batch.
    """
    erased = kept = reinstalled = 0
    last_pk = 0
    with transaction.atomic():
        while True:
            rows = list(
                Registration.objects.filter(pk__gt=last_pk)
                .order_by("pk")
                .values_list("pk", "client_key", "state", "installed_at")[:batch_size]
            )
            if not rows:
                break
            last_pk = rows[-1][0]
            plan = plan_reapply([RestoredRow(*row[1:]) for row in rows])
            erased += len(plan.erase) if dry_run else apply_plan(plan)
            kept += plan.kept_pending
            reinstalled += plan.reinstalled_since
    result = ReapplyResult(
        erased_again=erased,
        kept_pending=kept,
        reinstalled_since=reinstalled,
        other_key_entries=entries_under_another_key(),
    )
    if not dry_run:
        logger.info(
            "erasure ledger re-applied by %s: %d erased again, %d pending kept, %d reinstalled since",
            _actor_label(actor),
            erased,
            kept,
            reinstalled,
        )
    return result
