"""Forms of the public rights-request pages: the request form, identity upload, answers, withdrawal."""

import unicodedata

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from dsr_requests.models import Concerns, RequestType, TransferTo

# Where the requester lives decides which law's time limit applies (EU/EEA GDPR, UK GDPR, CCPA); the
# list covers those regimes and the countries most of our customers are in, "other" covers the rest.
COUNTRIES = [
    ("AT", _("Austria")),
    ("AU", _("Australia")),
    ("BE", _("Belgium")),
    ("BG", _("Bulgaria")),
    ("BR", _("Brazil")),
    ("CA", _("Canada")),
    ("CH", _("Switzerland")),
    ("CY", _("Cyprus")),
    ("CZ", _("Czechia")),
    ("DE", _("Germany")),
    ("DK", _("Denmark")),
    ("EE", _("Estonia")),
    ("ES", _("Spain")),
    ("FI", _("Finland")),
    ("FR", _("France")),
    ("GB", _("United Kingdom")),
    ("GR", _("Greece")),
    ("HR", _("Croatia")),
    ("HU", _("Hungary")),
    ("IE", _("Ireland")),
    ("IN", _("India")),
    ("IS", _("Iceland")),
    ("IT", _("Italy")),
    ("JP", _("Japan")),
    ("LI", _("Liechtenstein")),
    ("LT", _("Lithuania")),
    ("LU", _("Luxembourg")),
    ("LV", _("Latvia")),
    ("MT", _("Malta")),
    ("NL", _("Netherlands")),
    ("NO", _("Norway")),
    ("NZ", _("New Zealand")),
    ("PL", _("Poland")),
    ("PT", _("Portugal")),
    ("RO", _("Romania")),
    ("SE", _("Sweden")),
    ("SI", _("Slovenia")),
    ("SK", _("Slovakia")),
    ("US", _("United States")),
]

NO_COUNTRY = ("", _("Prefer not to say / other"))


def collation_key(name: str) -> tuple[str, str]:
    """Sort key of a country name in any Latin-script language: accents and case set aside first
    ("Österreich" beside "Oman", "Émirats" among the E's), then used to break ties.

    Unicode's decomposition (NFKD) splits a letter from its accents; casefold() folds case (ß as ss).
    That is how dictionaries of the languages we serve sort names, without the C library's locale, which
    sorts by code point and would put "Österreich" after "Zypern". A full UCA (PyICU) is not needed for
    the ~40 names of the list.
    """
    decomposed = unicodedata.normalize("NFKD", name)
    base = "".join(char for char in decomposed if not unicodedata.combining(char))
    return base.casefold(), name.casefold()


def country_choices():
    """The country list sorted by name in the page's language (evaluated per form, so per request), with
    "prefer not to say" first."""
    named = [(code, str(label)) for code, label in COUNTRIES]
    return [NO_COUNTRY, *sorted(named, key=lambda choice: collation_key(choice[1]))]


MAX_TEXT = 5000


class RightsRequestForm(forms.Form):
    """The public request form. ``website`` is a honeypot: hidden from people, filled in by bots."""

    request_type = forms.ChoiceField(
        label=_("What would you like us to do?"), choices=RequestType.choices, widget=forms.RadioSelect
    )
    name = forms.CharField(label=_("Your name"), max_length=200)
    email = forms.EmailField(
        label=_("Your email address"),
        max_length=254,
        help_text=_("We will send a link to this address to confirm it is yours."),
    )
    country = forms.ChoiceField(label=_("Where do you live?"), choices=country_choices, required=False)
    site_url = forms.URLField(
        label=_("Atlassian site (optional)"),
        max_length=500,
        required=False,
        assume_scheme="https",
        help_text=_("For example https://your-company.atlassian.net"),
    )
    concerns = forms.ChoiceField(
        label=_("What does the request concern? (optional)"),
        choices=Concerns.choices,
        required=False,
        widget=forms.RadioSelect,
    )
    details = forms.CharField(
        label=_("Details (optional)"),
        max_length=MAX_TEXT,
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_("Anything that helps us find your data or understand your request."),
    )
    transfer_to = forms.ChoiceField(
        label=_("For a transfer: where should the data go?"),
        choices=TransferTo.choices,
        required=False,
        widget=forms.RadioSelect,
    )
    transfer_email = forms.EmailField(
        label=_("For a transfer to another organisation: their email address"),
        max_length=254,
        required=False,
    )
    website = forms.CharField(
        label=_("Leave this field empty"),
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "tabindex": "-1"}),
    )

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if any(ord(ch) < 32 for ch in name):
            raise forms.ValidationError(_("Please enter your name without control characters."))
        return name

    def clean(self):
        data = super().clean()
        if data.get("request_type") == RequestType.TRANSFER:
            if not data.get("transfer_to"):
                self.add_error("transfer_to", _("Please choose where the data should go."))
            elif data["transfer_to"] == TransferTo.ORGANISATION and not data.get("transfer_email"):
                self.add_error("transfer_email", _("Please give the other organisation's email address."))
        else:
            # Transfer details only mean something for a transfer; drop what a changed mind left behind.
            data["transfer_to"] = ""
            data["transfer_email"] = ""
        if data.get("transfer_to") == TransferTo.REQUESTER:
            data["transfer_email"] = ""
        return data

    @property
    def is_bot(self):
        """True when the honeypot was filled in."""
        return bool(self.cleaned_data.get("website"))


# File signatures ("magic bytes") of the formats accepted; the name and the browser's type are not trusted.
SIGNATURES = [
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
]


def sniff_content_type(head):
    """The content type a file's first bytes prove, or None."""
    for signature, content_type in SIGNATURES:
        if head.startswith(signature):
            return content_type
    return None


def too_large_message():
    """The upload error that names the limit (the form's, and the view's for a body too large to open)."""
    return _(
        "The file is too large: the limit is %(limit)s. Please send a smaller PDF, PNG or JPEG file."
    ) % {"limit": filesizeformat(settings.DSR_UPLOAD_MAX_BYTES)}


def read_document(upload):
    """The bytes and proven content type of an uploaded document, or ValidationError saying why not.

    The size is checked before the file is read into memory; the type by its first bytes, never by its
    name or the browser's word. Used for identity documents and for an authorized agent's permission.
    """
    if upload.size > settings.DSR_UPLOAD_MAX_BYTES:
        raise forms.ValidationError(too_large_message())
    content = upload.read()
    content_type = sniff_content_type(content[:16])
    if content_type is None:
        raise forms.ValidationError(
            _("This file is not a PDF, PNG or JPEG: please upload one of those, up to %(limit)s.")
            % {"limit": filesizeformat(settings.DSR_UPLOAD_MAX_BYTES)}
        )
    return content, content_type


class IdentityDocumentForm(forms.Form):
    """One identity document: PDF, PNG or JPEG, recognised by content, within the size limit."""

    document = forms.FileField(label=_("Identity document (PDF, PNG or JPEG)"))

    def clean_document(self):
        content, self.cleaned_data["content_type"] = read_document(self.cleaned_data["document"])
        return content


class AnswerForm(forms.Form):
    """The requester's answer to a question staff asked."""

    question = forms.IntegerField(widget=forms.HiddenInput, min_value=1, max_value=2**63 - 1)
    answer = forms.CharField(
        label=_("Your answer"), max_length=MAX_TEXT, widget=forms.Textarea(attrs={"rows": 4})
    )


class WithdrawForm(forms.Form):
    """Withdrawal needs an explicit tick, so a stray click cannot end a request."""

    confirm = forms.BooleanField(label=_("Yes, withdraw my request"))


class AccountCodeForm(forms.Form):
    """The one-time code from the status page, typed inside the Connect app."""

    code = forms.CharField(
        label=_("Code from your status page"),
        max_length=20,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autocapitalize": "characters"}),
    )


class LostLinkForm(forms.Form):
    """Ask for fresh links to one's requests by email address."""

    email = forms.EmailField(
        label=_("Your email address"),
        max_length=254,
        help_text=_("The address you gave when you made the request."),
    )


class DownloadCodeForm(forms.Form):
    """The one-time download code we emailed, typed on the status page."""

    code = forms.CharField(
        label=_("Download code from our email"),
        max_length=20,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autocapitalize": "characters"}),
    )
