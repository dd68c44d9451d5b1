"""Forge installations in the registry backups (``backups.py``): their rows, and how a restore applies them.

A backup holds the Forge side of each tenant beside its Connect registrations, in frames of their own
(kind ``F``) after the registration frames and covered by the same manifest (``forge_row_count``,
``forge_sha256``), so a restore brings back a tenant's platforms together. The link to the Connect
registration is stored as its ``client_key`` (ids differ between databases) and re-resolved on restore,
after the registrations of the same backup are in. No secret exists on this side.

Restore rule, as for registrations: an installation missing from the database is created; one whose row
differs is updated unless the database's row saw a newer lifecycle event (``last_event_at``), which wins.
"""

import datetime as dt

from registrations.models import ForgeInstallation, Registration

FIELDS = [
    f.name for f in ForgeInstallation._meta.concrete_fields if not f.primary_key and f.name != "registration"
]
LINK = "registration_client_key"
OUTCOMES = ("new", "updated", "unchanged", "newer_in_database")


def row_batches(batch_size):
    """The installations as backup rows, in batches (one streamed query)."""
    rows = (
        ForgeInstallation.objects.order_by("pk")
        .values(*FIELDS, **{LINK: _client_key()})
        .iterator(chunk_size=batch_size)
    )
    batch = []
    for row in rows:
        row[LINK] = row[LINK] or ""
        batch.append(row)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _client_key():
    from django.db.models import F

    return F("registration__client_key")


def known_fields():
    """The field names a Forge row may carry."""
    return {*FIELDS, LINK}


def restore_rows(rows, counts, *, dry_run):
    """Apply one batch of backed-up installations; ``counts`` (outcome -> n) is updated."""
    by_name = {f.name: f for f in ForgeInstallation._meta.concrete_fields}
    decoded = []
    for row in rows:
        values = {name: by_name[name].to_python(value) for name, value in row.items() if name != LINK}
        decoded.append((values, row.get(LINK) or ""))
    existing = ForgeInstallation.objects.in_bulk(
        [values["installation_id"] for values, _key in decoded], field_name="installation_id"
    )
    links = dict(
        Registration.objects.filter(client_key__in={key for _values, key in decoded if key}).values_list(
            "client_key", "pk"
        )
    )
    for values, client_key in decoded:
        values["registration_id"] = links.get(client_key)
        current = existing.get(values["installation_id"])
        if current is None:
            outcome = "new"
        elif all(getattr(current, name) == value for name, value in values.items()):
            outcome = "unchanged"
        elif current.last_event_at > (values.get("last_event_at") or dt.datetime.min.replace(tzinfo=dt.UTC)):
            outcome = "newer_in_database"
        else:
            outcome = "updated"
        counts[outcome] = counts.get(outcome, 0) + 1
        if dry_run or outcome in ("unchanged", "newer_in_database"):
            continue
        if current is None:
            ForgeInstallation.objects.create(**values)
        else:
            ForgeInstallation.objects.filter(pk=current.pk).update(**values)
