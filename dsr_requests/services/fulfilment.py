"""Fulfilment: carrying out an approved request in a background job, one recorded step at a time.

An approved request is carried out by a background job (tasks.fulfil_request) that calls
``run_fulfilment``. The job is a list of named steps per request type; each step records itself as
done in ``FulfilmentRun.steps`` in the same transaction as its effect, so a rerun after a crash skips
what is done and repeats nothing (no second file, email or erasure). A job that fails
DSR_FULFILMENT_MAX_FAILURES times goes back to staff (fulfilling -> approved) with the error on the
timeline (staff only).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _

from artemis_portal import providers
from artemis_portal.logging import redact
from dsr_requests import emails, ledger, tokens
from dsr_requests.clock import days_past_statutory_date
from dsr_requests.models import (
    EmailStatus,
    RequestType,
)
from dsr_requests.services._base import _event, _lock, _transition, background_task, logger
from dsr_requests.services.outbox import deliver_email, queue_requester_email
from dsr_requests.services.retention import _tombstone
from dsr_requests.services.statutory import _record_late, require_processing_register
from dsr_requests.states import SYSTEM, S

if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

    from django.contrib.auth.models import User

    from dsr_requests.models import FulfilmentRun, ProcessingActivity, RightsRequest

RUN_DONE = "done"
RUN_RETRY = "retry"
RUN_FAILED = "failed"
RUN_SKIPPED = "skipped"


class ReceiptNotSent(Exception):
    """The erasure receipt is not delivered yet; the tombstone waits for it (the job retries)."""


def subject_for(rights_request: RightsRequest) -> providers.Subject:
    """The data subject of a request: its verified email, account, and site when site-scoped."""
    from dsr_requests.models import Concerns

    site_scoped = rights_request.concerns == Concerns.SITE and rights_request.site_client_key
    return providers.Subject(
        email=rights_request.email,
        email_hash=rights_request.email_hash,
        account_id=rights_request.account_id,
        site_client_key=rights_request.site_client_key if site_scoped else "",
        site_url=rights_request.verified_site_url if site_scoped else "",
        exclude_reference=rights_request.reference,
    )


def fulfilment_steps(rights_request: RightsRequest) -> list[str]:
    """The named steps that carry out ``rights_request``, in order (deterministic, so reruns match)."""
    kind = rights_request.request_type
    if kind in (RequestType.REVIEW, RequestType.COPY):
        return ["export_zip", "notify_export", "finish"]
    if kind == RequestType.TRANSFER:
        return ["export_json", "notify_transfer", "finish"]
    if kind == RequestType.PROCESSING:
        return ["notify_processing", "finish"]
    if kind == RequestType.CHANGE:
        keys = sorted(set(rights_request.rectifications.values_list("provider", flat=True)))
        return [*(f"rectify:{key}" for key in keys), "notify_changed", "finish"]
    return [*(f"erase:{p.key}" for p in providers.all_providers()), "receipt", "finish"]


def _begin_fulfilment_run(locked: RightsRequest) -> FulfilmentRun:
    """Create (or re-arm, after a failure went back to staff) the run, and queue the job on commit."""
    from dsr_requests.models import FulfilmentRun, RunStatus

    run, created = FulfilmentRun.objects.get_or_create(request=locked)
    if not created:
        run.status = RunStatus.RUNNING
        run.failures = 0
        run.last_error = ""
        run.finished_at = None
        run.save(update_fields=["status", "failures", "last_error", "finished_at"])
    transaction.on_commit(lambda: enqueue_fulfilment(locked.pk))
    return run


def enqueue_fulfilment(request_id: int, *, run_after: datetime | None = None) -> None:
    """Queue the fulfilment job of a request (``run_after`` when the backend can defer)."""
    task = background_task("fulfil_request")
    if run_after is not None and task.get_backend().supports_defer:
        task = task.using(run_after=run_after)
    task.enqueue(request_id)


def _mark_done(run: FulfilmentRun, step: str, **result: Any) -> None:
    """Record ``step`` as done (call in the transaction that made its effect)."""
    run.steps[step] = {"done_at": timezone.now().isoformat(), **result}
    run.heartbeat_at = timezone.now()
    run.save(update_fields=["steps", "heartbeat_at"])


def _heartbeat(run_id: int) -> None:
    """Let ``dsr_resume_fulfilment`` see that a long step is still alive."""
    from dsr_requests.models import FulfilmentRun

    FulfilmentRun.objects.filter(pk=run_id).update(heartbeat_at=timezone.now())


def run_fulfilment(*, request_id: int) -> str:
    """Carry out every step not yet done; returns RUN_DONE, RUN_RETRY, RUN_FAILED or RUN_SKIPPED.

    Safe to call any number of times: a request not in ``fulfilling``, a run already finished or
    failed, or a run another worker is working on (its heartbeat is fresh) is skipped. A failure
    clears the heartbeat, so the retry may claim the run at once.
    """
    from dsr_requests.models import FulfilmentRun, RunStatus

    now = timezone.now()
    with transaction.atomic():
        run = FulfilmentRun.objects.select_for_update().filter(request_id=request_id).first()
        if run is None or run.status != RunStatus.RUNNING or run.request.state != S.FULFILLING:
            return RUN_SKIPPED
        if run.heartbeat_at and run.heartbeat_at > now - timedelta(
            minutes=settings.DSR_FULFILMENT_STALE_MINUTES
        ):
            return RUN_SKIPPED  # another worker holds it (a duplicate job from a resume)
        run.attempts += 1
        run.heartbeat_at = timezone.now()
        run.save(update_fields=["attempts", "heartbeat_at"])
    try:
        for step in fulfilment_steps(run.request):
            if step not in run.steps:
                _run_step(run, step)
    except Exception as exc:  # any failure is recorded and retried; the run never dies silently
        logger.warning("fulfilment of request %s failed at an attempt: %s", request_id, type(exc).__name__)
        return _record_failure(run.pk, exc)
    return RUN_DONE


def _record_failure(run_id: int, exc: BaseException) -> str:
    """Count a failure; at the limit, send the request back to staff with the error on its timeline."""
    from dsr_requests.models import FulfilmentRun, RunStatus

    # The message helps staff see what broke, but may quote data (an address an SMTP server refused):
    # it goes through the log filter's redaction, and a tombstone blanks it.
    error = redact(f"{type(exc).__name__}: {exc}")[:300]
    with transaction.atomic():
        run = FulfilmentRun.objects.select_for_update().get(pk=run_id)
        run.failures += 1
        run.last_error = error
        run.heartbeat_at = None
        fields = ["failures", "last_error", "heartbeat_at"]
        outcome = RUN_RETRY
        if run.failures >= settings.DSR_FULFILMENT_MAX_FAILURES:
            run.status = RunStatus.FAILED
            run.finished_at = timezone.now()
            fields += ["status", "finished_at"]
            locked = _lock(run.request)
            if locked.state == S.FULFILLING:
                note = _(
                    "Fulfilment failed %(count)d times and is back with staff. Last error: %(error)s"
                ) % {
                    "count": run.failures,
                    "error": error,
                }
                _transition(locked, to_state=S.APPROVED, actor=SYSTEM, note=note, public=False)
            outcome = RUN_FAILED
        run.save(update_fields=fields)
    return outcome


def _run_step(run: FulfilmentRun, step: str) -> None:
    """Run one step; each handler marks the step done in the transaction of its effect."""
    name, _sep, arg = step.partition(":")
    handlers = {
        "export_zip": lambda: _step_export(run, step, kind="zip"),
        "export_json": lambda: _step_export(run, step, kind="json"),
        "notify_export": lambda: _step_notify(run, step, "export_ready"),
        "notify_transfer": lambda: _step_notify_transfer(run, step),
        "notify_processing": lambda: _step_notify_processing(run, step),
        "rectify": lambda: _step_rectify(run, step, arg),
        "notify_changed": lambda: _step_notify(run, step, "changed"),
        "erase": lambda: _step_erase(run, step, arg),
        "receipt": lambda: _step_receipt(run, step),
        "finish": lambda: _step_finish(run, step),
    }
    handlers[name]()


def processing_register() -> list[ProcessingActivity]:
    """The processing register, in order: what a processing answer and every export README say."""
    from dsr_requests.models import ProcessingActivity

    return list(ProcessingActivity.objects.all())


def _step_export(run: FulfilmentRun, step: str, *, kind: str) -> None:
    """Write the export file (encrypted, deterministic name), then record it and the step together."""
    from dsr_requests import exports
    from dsr_requests.models import DataExport

    rights_request = run.request
    require_processing_register(request_type=rights_request.request_type)
    file_name = f"{rights_request.reference}-{kind}.export"
    size, sha256, records = exports.write_export(
        file_name,
        kind=kind,
        rights_request=rights_request,
        subject=subject_for(rights_request),
        providers=providers.all_providers(),
        activities=processing_register(),
        progress=lambda _count: _heartbeat(run.pk),
    )
    with transaction.atomic():
        export, _created = DataExport.objects.update_or_create(
            request=rights_request,
            kind=kind,
            defaults={
                "file_name": file_name,
                "size": size,
                "sha256": sha256,
                "records": records,
                "expires_at": timezone.now() + timedelta(days=settings.DSR_EXPORT_VALID_DAYS),
                "purged_at": None,
            },
        )
        _event(
            rights_request,
            actor=SYSTEM,
            note=_("Export prepared: %(records)d records.") % {"records": records},
            public=False,
        )
        _mark_done(run, step, export_id=export.pk)


def _step_notify_processing(run: FulfilmentRun, step: str) -> None:
    """The processing answer needs the register filled in first (a refusal, not an empty answer)."""
    require_processing_register(request_type=run.request.request_type)
    _step_notify(run, step, "processing_answer")


def _step_notify(run: FulfilmentRun, step: str, event: str, **context: Any) -> None:
    """Queue one requester email and record the step, in one transaction (so it is sent once)."""
    with transaction.atomic():
        locked = _lock(run.request)
        context.update(_notify_context(locked, event))
        queue_requester_email(rights_request=locked, event=event, **context)
        _mark_done(run, step)


def _notify_context(rights_request: RightsRequest, event: str) -> dict[str, Any]:
    """What each fulfilment email shows."""
    if event == "export_ready":
        export = rights_request.exports.get(kind="zip")
        return {"expires_at": export.expires_at, "code_minutes": settings.DSR_DOWNLOAD_CODE_TTL_MINUTES}
    if event == "processing_answer":
        return {"activities": processing_register()}
    if event == "changed":
        return {
            "changes": [
                {"provider": providers.get(r.provider).title, "field": r.field, "value": r.new_value}
                for r in rights_request.rectifications.exclude(applied_at=None)
            ]
        }
    return {}


def _step_notify_transfer(run: FulfilmentRun, step: str) -> None:
    """Email the one-time link to the transfer's recipient: the requester, or the organisation."""
    from dsr_requests.models import TransferTo

    with transaction.atomic():
        locked = _lock(run.request)
        export = locked.exports.select_for_update().get(kind="json")
        token, token_hash = tokens.new_status_token()
        export.link_token_hash = token_hash
        export.link_used_at = None
        export.save(update_fields=["link_token_hash", "link_used_at"])
        to_organisation = locked.transfer_to == TransferTo.ORGANISATION and locked.transfer_email
        queue_requester_email(
            rights_request=locked,
            event="transfer_link",
            to=locked.transfer_email if to_organisation else None,
            link_url=emails.absolute_url("dsr_requests:transfer", token=token),
            expires_at=export.expires_at,
            to_organisation=bool(to_organisation),
            **({"name": ""} if to_organisation else {}),
        )
        note = (
            _("The transfer link was sent to the receiving organisation.")
            if to_organisation
            else _("The transfer link was sent to you.")
        )
        _event(locked, actor=SYSTEM, note=note, public=True)
        if to_organisation:
            # The requester would otherwise hear nothing: the only email went to the organisation.
            queue_requester_email(
                rights_request=locked,
                event="completed",
                note=_(
                    "We sent a one-time link to your data to the organisation you named. The link works "
                    "once and expires on %(date)s."
                )
                % {"date": date_format(timezone.localtime(export.expires_at), "DATE_FORMAT")},
            )
        _mark_done(run, step, recipient="organisation" if to_organisation else "requester")


def _step_rectify(run: FulfilmentRun, step: str, provider_key: str) -> None:
    """Apply the corrections staff recorded for one provider."""
    with transaction.atomic():
        locked = _lock(run.request)
        corrections = list(locked.rectifications.select_for_update().filter(provider=provider_key))
        changed = providers.get(provider_key).rectify(
            subject_for(locked), {c.field: c.new_value for c in corrections}
        )
        locked.rectifications.filter(provider=provider_key).update(applied_at=timezone.now())
        _mark_done(run, step, changed=changed)


def _step_erase(run: FulfilmentRun, step: str, provider_key: str) -> None:
    """Erase the subject's data held by one provider, and keep what was erased for the receipt."""
    provider = providers.get(provider_key)
    with transaction.atomic():
        locked = _lock(run.request)
        erasure = provider.erase(subject_for(locked))
        _mark_done(run, step, title=str(provider.title), erased=erasure.erased, kept=erasure.kept)


def erasure_receipt(run: FulfilmentRun) -> dict[str, Any]:
    """The receipt of an erasure: per provider what and how many, when, and who approved it."""
    from datetime import datetime

    rights_request = run.request
    lines = []
    for provider in providers.all_providers():
        done = run.steps.get(f"erase:{provider.key}")
        if done:
            lines.append(
                {
                    "title": done["title"],
                    "erased": done["erased"],
                    "kept": done["kept"],
                    "at": datetime.fromisoformat(done["done_at"]),
                    "holds_personal_data": provider.holds_personal_data,
                }
            )
    return {
        "providers": lines,
        "approved_by": [
            staff_name_for_requester(user)
            for user in (rights_request.approved_by, rights_request.erasure_approved_by)
            if user is not None
        ],
    }


def staff_name_for_requester(user: User) -> str:
    """How a staff member is named to a requester: their full name, never a login (often an email address)."""
    return user.get_full_name() or str(_("Privacy team member no. %(number)d") % {"number": user.pk})


def _step_receipt(run: FulfilmentRun, step: str) -> None:
    """Queue the receipt email (sent before the tombstone removes the address it goes to)."""
    with transaction.atomic():
        locked = _lock(run.request)
        email = queue_requester_email(
            rights_request=locked, event="erasure_receipt", receipt=erasure_receipt(run)
        )
        _mark_done(run, step, email_id=email.pk)


def _step_finish(run: FulfilmentRun, step: str) -> None:
    """Complete the request; a deletion also becomes a tombstone, once its receipt is delivered."""
    from dsr_requests.models import OutboundEmail

    is_delete = run.request.request_type == RequestType.DELETE
    if is_delete:
        email_id = run.steps["receipt"]["email_id"]
        deliver_email(email_id=email_id)
        if OutboundEmail.objects.filter(pk=email_id, status=EmailStatus.PENDING).exists():
            raise ReceiptNotSent("the erasure receipt could not be sent yet")
    from dsr_requests.models import RunStatus

    with transaction.atomic():
        locked = _lock(run.request)
        if is_delete:
            ledger.record_request_erasure(rights_requests=[locked], reference=locked.reference, actor=SYSTEM)
            _tombstone(locked)
            note = _("Your personal data has been erased; we emailed you the receipt.")
        else:
            note = _("Done.")
        late = days_past_statutory_date(locked)
        _transition(locked, to_state=S.COMPLETED, actor=SYSTEM, note=note, public=True)
        # Staff confirmed the lateness when they started the job; the record says when it really ended.
        _record_late(locked, actor=SYSTEM, late=late, action=_("Completed"))
        run.status = RunStatus.DONE
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at"])
        _mark_done(run, step)


def resume_stalled_fulfilment(*, now: datetime | None = None) -> list[str]:
    """Queue again every running fulfilment with no sign of life for DSR_FULFILMENT_STALE_MINUTES.

    A worker killed mid-job leaves its task marked running forever; this is how such a request gets
    finished. Returns the references queued.
    """
    from dsr_requests.models import FulfilmentRun, RunStatus

    now = now or timezone.now()
    cutoff = now - timedelta(minutes=settings.DSR_FULFILMENT_STALE_MINUTES)
    stalled = FulfilmentRun.objects.filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff),
        status=RunStatus.RUNNING,
        request__state=S.FULFILLING,
    ).select_related("request")
    references = []
    for run in stalled:
        enqueue_fulfilment(run.request_id)
        references.append(run.request.reference)
    return references
