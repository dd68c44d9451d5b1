"""The rights requests' own provider: a person's requests, and everything recorded while handling them.

The provider interface and registry are in ``artemis_portal/providers.py`` (re-exported here, so
``dsr_requests.providers.register`` and friends keep working); this app registers
``RightsRequestProvider`` in ``DsrRequestsConfig.ready``.
"""

from django.utils.translation import gettext_lazy as _

from artemis_portal.providers import (  # noqa: F401 (re-exported: callers use dsr_requests.providers.*)
    Erasure,
    Provider,
    Subject,
    Withheld,
    _registry,
    all_providers,
    get,
    register,
)
from dsr_requests import export_parallel, export_records


class RightsRequestProvider(Provider):
    """The rights requests themselves: a person's requests, and everything recorded while handling them."""

    key = "rights_requests"
    title = _("Your requests to us")
    description = _(
        "The privacy requests you made to us: your name, email address, what you asked and the details you "
        "gave, your Atlassian account ID and site where you proved them, the dates and due dates, any "
        "extension or refusal and its reason, the whole history of each request including our staff's "
        "internal notes, the outcome of each identity check, the questions we asked you and your answers, "
        "the emails we sent you, the corrections we recorded, the exports we made and when they were "
        "downloaded, and when our staff looked at or acted on your request. A request whose details we "
        "erased is listed with what is left of it (reference, type, dates, outcome)."
    )
    fields = export_records.REQUEST_FIELDS
    # Read by ``exports.CsvSpool``: only these keys need converting for the CSV (see NESTED_FIELDS).
    nested_fields = export_records.NESTED_FIELDS
    rectifiable_fields = ("name",)

    def _queryset(self, subject, *, erased=False):
        """The subject's requests, by email blind index or bound account; with ``erased``, tombstones too."""
        from django.db.models import Q

        from dsr_requests.models import RightsRequest

        match = Q(email_hash=subject.email_hash) if subject.email_hash else Q(pk__in=[])
        if subject.account_id:
            match |= Q(account_id=subject.account_id)
        requests = RightsRequest.objects.filter(match)
        return requests if erased else requests.filter(erased_at__isnull=True)

    def find(self, subject):
        return self._queryset(subject, erased=True).count()

    def export(self, subject):
        """Yield one record per request, oldest first (``export_records.export_requests``).

        Tombstones are exported too (what is left of them is still held). Requests are read 500 per
        round trip and each related table in one query of its own, as plain tuples rather than with
        ``prefetch_related``: prefetched instances point at each other in cycles that only the cyclic
        garbage collector frees, so memory would grow with the record count before a full collection came.
        """
        yield from export_records.export_requests(
            self._queryset(subject, erased=True),
            fields=self.fields,
            redact=export_records.StaffRedactor(subject_email=subject.email),
        )

    def export_batches(self, subject, *, with_csv):
        """The records of ``export``, encoded for the export file (``exports.provider_batches``): in helper
        processes when there are many (``export_parallel``), the same bytes either way."""
        return export_parallel.request_batches(
            self._queryset(subject, erased=True),
            fields=self.fields,
            nested=self.nested_fields,
            with_csv=with_csv,
            redact=export_records.StaffRedactor(subject_email=subject.email),
        )

    def withheld(self, subject):
        """Staff identities (Art. 15(4)), credentials, the blind index, email texts, identity documents."""
        return [
            Withheld(
                what=_("Who on our staff handled your request"),
                reason=_(
                    "Our staff members' names, user names and email addresses, and the network address and "
                    "browser they used, are their personal data, and leaving them out hides nothing about "
                    "you (Art. 15(4) GDPR). Wherever a staff member acted, wrote a note, checked your "
                    "identity or looked at your request, the export says “staff”, also inside notes."
                ),
            ),
            Withheld(
                what=_(
                    "The fingerprints (hashes) of your status page link, of the one-time codes for the "
                    "Atlassian account proof and for downloads, and of transfer links"
                ),
                reason=_(
                    "Security credentials; disclosing them would put your request at risk. When each code "
                    "was made, expired and was used is included."
                ),
            ),
            Withheld(
                what=_("The lookup code computed from your email address"),
                reason=_(
                    "A keyed fingerprint of your email address that lets us find your requests without "
                    "decrypting it. It says nothing beyond the address itself, which is included, and "
                    "disclosing it would weaken that protection."
                ),
            ),
            Withheld(
                what=_("The text of the emails we sent you"),
                reason=_(
                    "You received them. We keep an email's text only until it is sent, because it holds "
                    "links and codes that open your request. Each email's subject, address, status and "
                    "dates are included."
                ),
            ),
            Withheld(
                what=_("Identity documents you sent us"),
                reason=_(
                    "We delete a document as soon as our staff record their check; only the outcome is "
                    "kept (included under identity checks). A document still waiting for the check is "
                    "listed with its type, size and date, but the file is not copied into this export: "
                    "you have it, and we never send identity documents out again."
                ),
            ),
            Withheld(
                what=_("Details of your requests that we erased"),
                reason=_(
                    "They no longer exist. What we keep of an erased request (its reference, type, dates "
                    "and outcome) is included."
                ),
            ),
        ]

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
