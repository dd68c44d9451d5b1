"""The provider registry: every place that may hold a data subject's personal data, behind one interface.

Each app registers its providers in its ``AppConfig.ready``. Fulfilment asks every provider in turn, so
adding a place that holds personal data means adding a provider, not changing the exports or erasure.

A provider has:

- ``key`` (stable, used in file names and receipts) and ``title``;
- ``description``: the categories of data it holds, in plain language (goes into the export README);
- ``holds_personal_data``: False for a provider that exists to say so (usage counts);
- ``fields``: the keys of its records, in order (the CSV columns and the documented JSON schema);
- ``find(subject)``: how many records it holds about the subject;
- ``export(subject)``: a generator of dict records, streaming (never the whole list in memory);
- ``erase(subject)``: erases the subject's data and returns an ``Erasure`` (counts, and what it keeps);
- optionally ``rectify(subject, changes)`` and ``rectifiable_fields``.
"""

from dataclasses import dataclass, field

from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Subject:
    """Who a request is about: the verified email, and what the Atlassian account proof bound.

    ``site_client_key`` is set only for a site-scoped request whose account proof was made inside that
    site: only then may tenant records be exported or erased for it.
    """

    email: str
    email_hash: str
    account_id: str = ""
    site_client_key: str = ""
    site_url: str = ""
    exclude_reference: str = ""

    def __repr__(self):
        # Never the email, even in a traceback's locals.
        return f"<Subject account={bool(self.account_id)} site={bool(self.site_client_key)}>"


@dataclass
class Erasure:
    """What a provider erased (``{"what": count}``) and what it had to keep, with the reason."""

    erased: dict = field(default_factory=dict)
    kept: list = field(default_factory=list)


class Provider:
    """Base class: a provider that holds nothing. Subclasses override what they hold."""

    key = ""
    title = ""
    description = ""
    holds_personal_data = True
    fields = ()
    rectifiable_fields = ()

    def find(self, subject):
        """How many records this provider holds about ``subject``."""
        return 0

    def export(self, subject):
        """Yield the subject's records, one dict each, keys from ``fields``."""
        yield from ()

    def erase(self, subject):
        """Erase the subject's data; return an ``Erasure``."""
        return Erasure()

    def rectify(self, subject, changes):
        """Apply ``{field: new value}``; return how many records changed."""
        raise NotImplementedError(f"{self.key} cannot correct data")


_registry = {}
# Rights requests read per database round trip when exporting.
CHUNK = 500


def register(provider):
    """Add a provider (an instance); registering the same key twice is a programming error."""
    if not provider.key or provider.key in _registry:
        raise ValueError(f"provider key {provider.key!r} is empty or already registered")
    _registry[provider.key] = provider
    return provider


def all_providers():
    """Every registered provider, in registration order (apps' order in INSTALLED_APPS)."""
    return list(_registry.values())


def get(key):
    """The provider registered under ``key``; KeyError if none."""
    return _registry[key]


class RightsRequestProvider(Provider):
    """The rights requests themselves: a person's earlier requests, their timeline and correspondence."""

    key = "rights_requests"
    title = _("Your requests to us")
    description = _(
        "The privacy requests you made to us: your name, email address, what you asked and the details you "
        "gave, your Atlassian account ID and site where you proved them, the dates, the history of each "
        "request, the questions we asked you and your answers, and the emails we sent you."
    )
    fields = (
        "reference",
        "request_type",
        "state",
        "received_at",
        "closed_at",
        "name",
        "email",
        "site_url",
        "details",
        "transfer_email",
        "account_id",
        "verified_site_url",
        "timeline",
        "questions",
        "emails",
    )
    rectifiable_fields = ("name",)

    def _queryset(self, subject):
        from django.db.models import Q

        from dsr_requests.models import RightsRequest

        match = Q(email_hash=subject.email_hash) if subject.email_hash else Q(pk__in=[])
        if subject.account_id:
            match |= Q(account_id=subject.account_id)
        return RightsRequest.objects.filter(match, erased_at__isnull=True)

    def find(self, subject):
        return self._queryset(subject).count()

    def export(self, subject):
        """Yield one record per request, reading 500 requests and their related rows at a time.

        Related rows are fetched per chunk as plain tuples rather than with ``prefetch_related``:
        prefetched instances point at each other in cycles that only the cyclic garbage collector
        frees, so memory would grow with the record count before a full collection came.
        """
        from itertools import islice

        requests = self._queryset(subject).order_by("received_at", "pk").iterator(chunk_size=CHUNK)
        while chunk := list(islice(requests, CHUNK)):
            ids = [rights_request.pk for rights_request in chunk]
            timeline, questions, emails = _related_rows(ids)
            for rights_request in chunk:
                yield {
                    "reference": rights_request.reference,
                    "request_type": rights_request.request_type,
                    "state": rights_request.state,
                    "received_at": rights_request.received_at,
                    "closed_at": rights_request.closed_at,
                    "name": rights_request.name,
                    "email": rights_request.email,
                    "site_url": rights_request.site_url,
                    "details": rights_request.details,
                    "transfer_email": rights_request.transfer_email,
                    "account_id": rights_request.account_id,
                    "verified_site_url": rights_request.verified_site_url,
                    "timeline": timeline.get(rights_request.pk, []),
                    "questions": questions.get(rights_request.pk, []),
                    "emails": emails.get(rights_request.pk, []),
                }

    def erase(self, subject):
        """Erase the subject's finished requests down to tombstones (the current one is tombstoned last).

        Requests still open are kept and named in the receipt: erasing one would silently end a copy or
        change the person is still waiting for. Once they are finished, a new erasure request removes them.
        """
        from dsr_requests import ledger, services

        others = self._queryset(subject).exclude(reference=subject.exclude_reference)
        finished = others.filter(state__in=services.FINAL_STATES)
        ledger.record_request_erasure(
            rights_requests=finished.only("account_id", "email_hash"),
            reference=subject.exclude_reference,
            actor=services.SYSTEM,
        )
        erased = 0
        for pk in finished.values_list("pk", flat=True).iterator():
            services.tombstone_request(request_id=pk)
            erased += 1
        still_open = list(
            others.exclude(state__in=services.FINAL_STATES)
            .order_by("received_at")
            .values_list("reference", flat=True)
        )
        kept = [
            str(
                _(
                    "Your request %(reference)s is still open, so it is kept until it is finished; ask us "
                    "again afterwards if you want its details erased too."
                )
                % {"reference": reference}
            )
            for reference in still_open
        ]
        return Erasure(erased={str(_("earlier requests (kept as tombstones)")): erased}, kept=kept)

    def rectify(self, subject, changes):
        unknown = set(changes) - set(self.rectifiable_fields)
        if unknown:
            raise ValueError(f"{self.key} cannot correct {sorted(unknown)}")
        changed = 0
        for rights_request in self._queryset(subject):
            for name, value in changes.items():
                setattr(rights_request, name, value)
            rights_request.save(update_fields=[*changes, "updated_at"])
            changed += 1
        return changed


def _related_rows(request_ids):
    """The public timeline, questions and emails of some requests, as dicts keyed by request id."""
    from dsr_requests.models import OutboundEmail, RequestEvent, StaffQuestion

    def grouped(queryset, keys):
        rows = {}
        for request_id, *values in queryset.values_list("request_id", *keys):
            rows.setdefault(request_id, []).append(dict(zip(keys.values(), values, strict=True)))
        return rows

    events = RequestEvent.objects.filter(request_id__in=request_ids, public=True).order_by("created_at", "id")
    questions = StaffQuestion.objects.filter(request_id__in=request_ids).order_by("asked_at", "id")
    emails = OutboundEmail.objects.filter(request_id__in=request_ids).order_by("created_at", "id")
    return (
        grouped(events, {"created_at": "at", "to_state": "state", "note": "note"}),
        grouped(questions, {"asked_at": "asked_at", "question": "question", "answer": "answer"}),
        grouped(emails, {"subject": "subject", "status": "status", "sent_at": "sent_at"}),
    )
