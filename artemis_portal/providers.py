"""The provider interface and registry: every place that may hold a data subject's personal data, behind
one interface.

It sits in the bottom layer so that every app implements it and registers into it without importing the
rights-request app: each app registers its providers in its ``AppConfig.ready``. Fulfilment asks every
provider in turn, so adding a place that holds personal data means adding a provider, not changing the
exports or erasure.

A provider has:

- ``key`` (stable, used in file names and receipts) and ``title``;
- ``description``: the categories of data it holds, in plain language (goes into the export README);
- ``holds_personal_data``: False for a provider that exists to say so (usage counts);
- ``fields``: the keys of its records, in order (the CSV columns and the documented JSON schema);
- ``find(subject)``: how many records it holds about the subject;
- ``export(subject)``: a generator of dict records, streaming (never the whole list in memory);
- ``erase(subject)``: erases the subject's data and returns an ``Erasure`` (counts, and what it keeps);
- ``withheld(subject)``: what it holds about the subject but leaves out of the export, each a
  ``Withheld(what=..., reason=...)`` (the export's README and data.json list them; Art. 15(3)-(4));
- optionally ``rectify(subject, changes)`` and ``rectifiable_fields``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


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

    def __repr__(self) -> str:
        # Never the email, even in a traceback's locals.
        return f"<Subject account={bool(self.account_id)} site={bool(self.site_client_key)}>"


@dataclass
class Erasure:
    """What a provider erased (``{"what": count}``) and what it had to keep, with the reason."""

    erased: dict = field(default_factory=dict)
    kept: list = field(default_factory=list)


@dataclass(frozen=True)
class Withheld:
    """Something a provider holds (or once held) about the subject but does not export, and why.

    Both texts are for the requester, in plain language (gettext); the README shows them under "What we
    did not include, and why" and data.json in its top-level ``withheld`` list.
    """

    what: str
    reason: str


class Provider:
    """Base class: a provider that holds nothing. Subclasses override what they hold."""

    key = ""
    title = ""
    description = ""
    holds_personal_data = True
    fields = ()
    rectifiable_fields = ()

    def find(self, subject: Subject) -> int:
        """How many records this provider holds about ``subject``."""
        return 0

    def export(self, subject: Subject) -> Iterator[dict[str, Any]]:
        """Yield the subject's records, one dict each, keys from ``fields``."""
        yield from ()

    def erase(self, subject: Subject) -> Erasure:
        """Erase the subject's data; return an ``Erasure``."""
        return Erasure()

    def withheld(self, subject: Subject) -> list[Withheld]:
        """What this provider leaves out of the subject's export, and why: a list of ``Withheld``."""
        return []

    def rectify(self, subject: Subject, changes: dict[str, str]) -> int:
        """Apply ``{field: new value}``; return how many records changed."""
        raise NotImplementedError(f"{self.key} cannot correct data")


_registry: dict[str, Provider] = {}


def register(provider: Provider) -> Provider:
    """Add a provider (an instance); registering the same key twice is a programming error."""
    if not provider.key or provider.key in _registry:
        raise ValueError(f"provider key {provider.key!r} is empty or already registered")
    _registry[provider.key] = provider
    return provider


def all_providers() -> list[Provider]:
    """Every registered provider, in registration order (apps' order in INSTALLED_APPS)."""
    return list(_registry.values())


def get(key: str) -> Provider:
    """The provider registered under ``key``; KeyError if none."""
    return _registry[key]
