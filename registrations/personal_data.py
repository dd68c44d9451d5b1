"""Atlassian's personal data reporting: report the account IDs the portal stores, erase closed accounts.

An app that stores Atlassian account IDs must report them to Atlassian on the cycle Atlassian asks for,
and erase the personal data of every account Atlassian answers is ``closed``. The API, as Atlassian
documents it for Connect apps:

- ``POST <site baseUrl>/rest/atlassian-connect/latest/report/accounts`` with a Connect JWT signed with that
  site's shared secret (``iss`` = app key, ``qsh`` over the POST and the path); any installed site may
  report any account, so an account whose own site has gone is reported through another;
- body ``{"accounts": [{"accountId": ..., "updatedAt": "2017-05-22T21:04:50.000Z"}]}``, at most 90 a call,
  ``updatedAt`` being when the app last stored or updated that account's data;
- answer 200 ``{"accounts": [{"accountId": ..., "status": "closed" | "updated"}]}`` naming only accounts
  that need action, or 204 when none do, both with ``Cycle-Period`` (hours until the next report is due);
  429 with ``Retry-After`` when rate-limited.

Apps contribute what they store through ``register_source`` (in their ``AppConfig.ready``): a function
listing ``(account_id, updated_at, client_key)`` rows and an ``erase(account_id=...)`` hook. ``report``
runs one cycle; the daily ``report_personal_data`` command calls it. A batch that fails is not lost: the
whole report stays due and is sent again on the next run. ``updated`` needs nothing: the portal caches no
profile data (names, emails, avatars) from Atlassian, so it is logged and ignored.

Account IDs are Atlassian's GDPR-safe identifier and may be logged; nothing else about a person is.
"""

import email.utils
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import requests
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from registrations import product_api
from registrations.jwt import ACTIVE_STATES, log_value
from registrations.models import PersonalDataReport, Registration

logger = logging.getLogger("artemis.personal_data")

REPORT_PATH = "/rest/atlassian-connect/latest/report/accounts"
BATCH_SIZE = 90
# Atlassian account IDs ("557058:<uuid>", or 24 hex characters); the same shape the identity proof accepts.
ACCOUNT_ID = re.compile(r"[A-Za-z0-9:._-]{1,128}")
# 90 accounts answer in a few kilobytes; anything far larger is not an answer worth parsing.
MAX_ANSWER_BYTES = 1024 * 1024
# Bounds on what an answer can make us do: never report more often than hourly, never wait over a year.
MAX_CYCLE_HOURS = 24 * 365
MAX_RETRY_AFTER = timedelta(days=7)
# Client keys per IN (...) query: well under SQLite's and PostgreSQL's parameter limits.
KEY_CHUNK = 500


class ReportError(Exception):
    """A batch could not be reported; the message is one line, safe to print and log (no secrets)."""


class RateLimited(ReportError):
    """Atlassian answered 429: send nothing more this run; ``retry_after`` is a timedelta or None."""

    def __init__(self, retry_after):
        self.retry_after = retry_after
        super().__init__("rate-limited by Atlassian (HTTP 429)")


# --- Sources: the apps that store account IDs --------------------------------------------------------


@dataclass(frozen=True)
class AccountSource:
    """One app's stored account IDs: ``accounts()`` lists them, ``erase(account_id=...)`` erases one."""

    name: str
    accounts: Callable[[], Iterable[tuple[str, datetime, str]]]
    erase: Callable[..., int]


_sources: dict[str, AccountSource] = {}


def register_source(name, *, accounts, erase):
    """Add an app's account IDs to the report; call from its ``AppConfig.ready``.

    ``accounts()`` returns ``(account_id, updated_at, client_key)`` rows: when that app last stored or
    changed the account's data, and the site it was bound on (``""`` if none). ``erase(account_id=...)``
    erases that account's data and returns how many records it changed. Registering a name again
    replaces the source, so a reloaded app does not report twice.
    """
    _sources[name] = AccountSource(name, accounts, erase)


def sources():
    """The registered sources, in registration order."""
    return list(_sources.values())


@dataclass
class StoredAccount:
    """An account ID as all sources together hold it: the latest update, and each site's latest binding."""

    updated_at: datetime
    sites: dict[str, datetime] = field(default_factory=dict)


def collect_accounts():
    """Every stored account ID across the sources, as ``{account_id: StoredAccount}``.

    Values that are not shaped like an account ID are left out (Atlassian would refuse the whole batch
    for one of them, so it would fail every run); the log says how many.
    """
    accounts = {}
    skipped = 0
    for source in sources():
        for account_id, updated_at, client_key in source.accounts():
            if not isinstance(account_id, str) or not ACCOUNT_ID.fullmatch(account_id):
                skipped += 1
                continue
            entry = accounts.get(account_id)
            if entry is None:
                entry = accounts[account_id] = StoredAccount(updated_at=updated_at)
            entry.updated_at = max(entry.updated_at, updated_at)
            if client_key:
                entry.sites[client_key] = max(entry.sites.get(client_key, updated_at), updated_at)
    if skipped:
        logger.warning(
            "personal data report: %d stored value(s) not shaped like an account ID left out", skipped
        )
    return accounts


# --- Planning: which site reports which account --------------------------------------------------------


def _active_tenants(client_keys):
    """The installed or enabled tenants among ``client_keys``, by client key (one query per chunk)."""
    keys = sorted(client_keys)
    found = {}
    for start in range(0, len(keys), KEY_CHUNK):
        chunk = keys[start : start + KEY_CHUNK]
        for tenant in Registration.objects.filter(client_key__in=chunk, state__in=ACTIVE_STATES):
            found[tenant.client_key] = tenant
    return found


def _fallback_tenant():
    """Any installed or enabled tenant, for accounts whose own site is gone: the most recently updated."""
    return Registration.objects.filter(state__in=ACTIVE_STATES).order_by("-updated_at", "pk").first()


def plan_batches(accounts):
    """Split ``accounts`` into ``(tenant, [account_id, ...])`` batches of at most ``BATCH_SIZE``.

    Each account goes through the latest active site it was bound on, else through any active site.
    Returns the batches and how many accounts no active site could take (all of them when there is no
    installed and enabled site at all).
    """
    active = _active_tenants({key for entry in accounts.values() for key in entry.sites})
    fallback, looked_up, unroutable = None, False, 0
    groups = {}
    for account_id, entry in accounts.items():
        bound = [(when, key) for key, when in entry.sites.items() if key in active]
        if bound:
            tenant = active[max(bound)[1]]
        else:
            if not looked_up:
                fallback, looked_up = _fallback_tenant(), True
            if fallback is None:
                unroutable += 1
                continue
            tenant = fallback
        groups.setdefault(tenant.client_key, (tenant, []))[1].append(account_id)
    batches = []
    for _key, (tenant, account_ids) in sorted(groups.items()):
        account_ids.sort()
        for start in range(0, len(account_ids), BATCH_SIZE):
            batches.append((tenant, account_ids[start : start + BATCH_SIZE]))
    return batches, unroutable


# --- The answer ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What one batch's answer asks of us, and the cycle period it gave (hours, None if unusable)."""

    closed: tuple[str, ...]
    updated: tuple[str, ...]
    cycle_hours: int | None


def parse_cycle_period(value):
    """``Cycle-Period`` as whole hours within 1 and ``MAX_CYCLE_HOURS``, or None when absent or malformed."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"\s*(\d{1,9})\s*", value, re.ASCII)
    if not match:
        return None
    return min(max(int(match.group(1)), 1), MAX_CYCLE_HOURS)


def parse_retry_after(value, *, now=None):
    """``Retry-After`` (seconds, or an HTTP date) as a timedelta within 0 and a week; None if unusable."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if re.fullmatch(r"\d{1,9}", value, re.ASCII):
        delay = timedelta(seconds=int(value))
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        try:
            delay = when - (now or timezone.now())
        except OverflowError:
            return None
    return min(max(delay, timedelta(0)), MAX_RETRY_AFTER)


def parse_answer(status, headers, body, *, sent):
    """Read the reporting API's answer to a batch of the account IDs ``sent``; raises only ``ReportError``.

    Only accounts that were in the batch are acted on: an answer naming any other account is not a
    reason to erase anything. An unknown status is logged and ignored, so a status Atlassian adds later
    does not fail every report.
    """
    if status == 429:
        raise RateLimited(parse_retry_after(headers.get("Retry-After")))
    if status not in (200, 204):
        raise ReportError(f"the site answered HTTP {status}")
    cycle_hours = parse_cycle_period(headers.get("Cycle-Period"))
    if status == 204:
        return Answer((), (), cycle_hours)
    if len(body) > MAX_ANSWER_BYTES:
        raise ReportError("the answer is too large")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ReportError("the answer is not JSON") from None
    items = data.get("accounts") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ReportError("the answer has no list of accounts")
    closed, updated = {}, {}
    for item in items:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("accountId"), str)
            and isinstance(item.get("status"), str)
        ):
            raise ReportError("the answer lists an entry without an accountId and a status")
        account_id, state = item["accountId"], item["status"]
        if account_id not in sent:
            logger.warning(
                "personal data report: answer names account_id=%s, not in the batch; ignored",
                log_value(account_id),
            )
        elif state == "closed":
            closed[account_id] = True
        elif state == "updated":
            updated[account_id] = True
        else:
            logger.warning(
                "personal data report: unknown status %s for account_id=%s ignored",
                log_value(state),
                account_id,
            )
    return Answer(tuple(closed), tuple(updated), cycle_hours)


# --- One run ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchResult:
    """How one batch went; ``error`` is one line when it failed."""

    number: int
    client_key: str
    size: int
    closed: int = 0
    erased: int = 0
    updated: int = 0
    error: str = ""

    @property
    def ok(self):
        return not self.error


@dataclass
class RunResult:
    """One call of ``report``: whether it ran, what it sent, and when the next report is due."""

    due: bool
    next_due_at: datetime | None = None
    accounts: int = 0
    total_batches: int = 0
    # Accounts left out because no installed and enabled site exists to report them through.
    unroutable: int = 0
    batches: list[BatchResult] = field(default_factory=list)

    @property
    def failed_batches(self):
        return sum(1 for batch in self.batches if not batch.ok)


def _updated_at(moment):
    """``updatedAt`` as Atlassian writes it: UTC, milliseconds, ``Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _retry_delay():
    return timedelta(minutes=settings.PERSONAL_DATA_RETRY_MINUTES)


def _claim(*, force):
    """Take the report for this run if it is due (or forced); False if it is not due.

    A conditional UPDATE sets the due time one retry delay ahead, so an overlapping run (a slow one and
    the next day's) finds it not due and sends nothing, and a run that dies leaves it due again once
    that delay has passed. No transaction stays open while the sites are called.
    """
    now = timezone.now()
    PersonalDataReport.objects.get_or_create(pk=1)
    due = Q(pk=1)
    if not force:
        due &= Q(next_due_at__isnull=True) | Q(next_due_at__lte=now)
    return (
        PersonalDataReport.objects.filter(due).update(next_due_at=now + _retry_delay(), last_run_at=now) == 1
    )


def send_batch(tenant, account_ids, accounts):
    """Report one batch through ``tenant`` and return the parsed ``Answer``; raises only ``ReportError``."""
    body = {
        "accounts": [{"accountId": a, "updatedAt": _updated_at(accounts[a].updated_at)} for a in account_ids]
    }
    try:
        response = product_api.call(tenant, "POST", REPORT_PATH, json=body)
    except requests.RequestException as exc:
        # The class only: the message can carry the URL, and says nothing an operator can act on.
        raise ReportError(f"could not reach the site ({type(exc).__name__})") from None
    return parse_answer(response.status_code, response.headers, response.content, sent=set(account_ids))


def erase_account(account_id):
    """Run every source's erase hook for a closed account; returns the records changed.

    Raises ``ReportError`` if a hook fails, after trying the others: the batch then counts as failed,
    so the account is reported again and erased on the next run.
    """
    erased, failures = 0, []
    for source in sources():
        try:
            erased += source.erase(account_id=account_id) or 0
        except Exception as exc:  # another app's hook: whatever it raises, the run goes on
            failures.append(source.name)
            logger.error(
                "personal data: erasing closed account_id=%s in %s failed (%s)",
                account_id,
                source.name,
                type(exc).__name__,
            )
    if failures:
        raise ReportError(f"erasing a closed account failed in {', '.join(failures)}")
    return erased


def _report_batch(number, tenant, account_ids, accounts):
    """Send one batch and act on its answer: erase closed accounts, log updated ones."""
    answer = send_batch(tenant, account_ids, accounts)
    erased, failed = 0, None
    for account_id in answer.closed:
        try:
            erased += erase_account(account_id)
        except ReportError as exc:
            failed = exc
            continue
        logger.info("personal data: account_id=%s closed; its data is erased", account_id)
    for account_id in answer.updated:
        logger.info(
            "personal data: account_id=%s updated; no profile data is cached, nothing to do", account_id
        )
    result = BatchResult(
        number=number,
        client_key=tenant.client_key,
        size=len(account_ids),
        closed=len(answer.closed),
        erased=erased,
        updated=len(answer.updated),
        error=str(failed) if failed else "",
    )
    return result, answer.cycle_hours


def report(*, force=False, progress=None):
    """Run one reporting cycle if it is due (or ``force``), and schedule the next; returns a ``RunResult``.

    ``progress(run, batch)`` is called after each batch. All batches answered: the next report is due
    after the shortest ``Cycle-Period`` they gave (``PERSONAL_DATA_DEFAULT_CYCLE_HOURS`` where none was
    usable). Any batch failed or not sent (429 stops the run): the whole report is due again after
    ``PERSONAL_DATA_RETRY_MINUTES``, or the ``Retry-After`` if later, so the failed accounts are sent on
    the next run; re-sending the others does no harm, as Atlassian's answer for them is the same.
    """
    if not _claim(force=force):
        return RunResult(due=False, next_due_at=PersonalDataReport.objects.get(pk=1).next_due_at)
    accounts = collect_accounts()
    batches, unroutable = plan_batches(accounts)
    run = RunResult(due=True, accounts=len(accounts), total_batches=len(batches), unroutable=unroutable)
    logger.info("personal data report: %d account(s) in %d batch(es)", len(accounts), len(batches))
    if unroutable:
        logger.warning(
            "personal data report: no installed and enabled site to report %d account(s) through; skipped",
            unroutable,
        )
    cycles, retry_after, limited = [], None, False
    for number, (tenant, account_ids) in enumerate(batches, start=1):
        if limited:
            result = BatchResult(number, tenant.client_key, len(account_ids), error="not sent: rate-limited")
        else:
            try:
                result, cycle = _report_batch(number, tenant, account_ids, accounts)
                if cycle is None:
                    logger.warning("personal data report: no usable Cycle-Period; assuming the default")
                    cycle = settings.PERSONAL_DATA_DEFAULT_CYCLE_HOURS
                cycles.append(cycle)
            except RateLimited as exc:
                limited, retry_after = True, exc.retry_after
                result = BatchResult(number, tenant.client_key, len(account_ids), error=str(exc))
            except ReportError as exc:
                result = BatchResult(number, tenant.client_key, len(account_ids), error=str(exc))
        if result.ok:
            logger.info(
                "personal data report batch %d/%d via client_key=%s: %d account(s), %d closed, %d updated",
                number,
                len(batches),
                tenant.client_key,
                result.size,
                result.closed,
                result.updated,
            )
        else:
            logger.warning(
                "personal data report batch %d/%d via client_key=%s failed: %s",
                number,
                len(batches),
                tenant.client_key,
                result.error,
            )
        run.batches.append(result)
        if progress:
            progress(run, result)
    _schedule(run, cycles=cycles, retry_after=retry_after)
    return run


def _schedule(run, *, cycles, retry_after):
    """Store when the next report is due, from this run's outcome (see ``report``)."""
    now = timezone.now()
    cycle_hours = None
    if run.failed_batches or run.unroutable:
        run.next_due_at = now + max(_retry_delay(), retry_after or timedelta(0))
    elif cycles:
        cycle_hours = min(cycles)
        run.next_due_at = now + timedelta(hours=cycle_hours)
    else:
        run.next_due_at = None  # nothing stored: nothing to report until an account is bound
    fields = {
        "next_due_at": run.next_due_at,
        "last_accounts": run.accounts,
        "last_failed_batches": run.failed_batches,
    }
    if cycle_hours:
        fields["cycle_period_hours"] = cycle_hours
    PersonalDataReport.objects.filter(pk=1).update(**fields)
