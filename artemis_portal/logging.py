"""Log filters: the request id on every line, and redaction of personal data and secrets.

The policy promises logs carry only a GDPR-safe Atlassian account ID. Code should never log an email or
a secret in the first place; this filter is the safety net for the line that slips through (an exception
message, a third-party library), applied to the handler so it sees every record.
"""

import logging
import re

from artemis_portal.request_context import current_request_id

EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
# A JWT: three base64url parts, the first two starting with '{"' encoded.
JWT = re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*")
# "Authorization: JWT xyz", "Bearer xyz", "secret=xyz", "password: xyz", "sharedSecret": "xyz" ...
LABELLED = re.compile(
    r"(?i)((?:authorization|bearer|jwt|secret|sharedsecret|shared_secret|password|passwd|token|"
    r"api[_-]?key|fernet_keys|secret_key)[\"']?\s*[:=]?\s*[\"']?)(?:JWT\s+|Bearer\s+)?[^\s\"',;&]{6,}"
)
# Long runs of key-like characters (Fernet tokens, keys); account IDs and UUIDs are shorter or dashed.
LONG_OPAQUE = re.compile(r"\b[A-Za-z0-9+/_]{40,}={0,2}")
# ...except a URL path of short lower-case segments (``/admin/dsr_requests/rightsrequest/12/change/``):
# no key looks like that, and masking it would hide which page a log line is about.
PATH_SEGMENT = re.compile(r"[a-z0-9_]{0,23}")

MASK = "[redacted]"


# Every log line passes through ``redact`` (the access line of every request too), and the two scans that
# try a pattern at every position cost more than the rest of the line's work together (issue 19). Each is
# skipped when the text cannot hold what it looks for: EMAIL needs an "@"; LABELLED needs one of its
# labels, compared after the three characters outside ASCII that ``(?i)`` matches to a label's letter but
# ``str.lower`` does not turn into it (dotted and dotless i, long s; tests/test_logging.py checks this
# list against every code point and the whole function against the plain four substitutions).
LABEL_HINTS = ("authorization", "bearer", "jwt", "secret", "passw", "token", "api", "fernet_keys")
_CASE_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s"})


def _may_hold_label(text):
    folded = text.translate(_CASE_FOLD).lower()
    return any(hint in folded for hint in LABEL_HINTS)


def redact(text):
    """Return ``text`` with email addresses and anything that looks like a secret replaced."""
    if "@" in text:
        text = EMAIL.sub("[email]", text)
    text = JWT.sub(MASK, text)
    if _may_hold_label(text):
        text = LABELLED.sub(lambda m: m.group(1) + MASK, text)
    return LONG_OPAQUE.sub(_mask_unless_path, text)


def _mask_unless_path(match):
    run = match.group(0)
    segments = run.split("/")
    if "/" in run and all(PATH_SEGMENT.fullmatch(segment) for segment in segments):
        return run
    if all(PATH_SEGMENT.fullmatch(segment) or len(segment) >= 40 for segment in segments):
        # A URL path with a secret in it (``/requests/status/<token>/``): only the secret goes, so the
        # line still says which page it was.
        return "/".join(segment if PATH_SEGMENT.fullmatch(segment) else MASK for segment in segments)
    return MASK


class ClientRefusalFilter(logging.Filter):
    """Log Django's ``django.security.*`` refusals as one WARNING line, without a traceback.

    A request with a foreign Host header or a bad CSRF token is the client's mistake (or a scanner's),
    answered with a 400 or 403; Django logs some of them at ERROR with the exception attached, which
    would page someone and bury the real errors under tracebacks that say nothing about our code.
    """

    def filter(self, record):
        if record.name.startswith("django.security."):
            record.exc_info = None
            record.exc_text = None
            if record.levelno > logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class RedactingFilter(logging.Filter):
    """Rewrite each record's message (with its arguments) through ``redact``."""

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string must not lose the line
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class RequestIdFilter(logging.Filter):
    """Add ``record.request_id`` (``-`` outside a request) so the formatter can print it."""

    def filter(self, record):
        record.request_id = current_request_id() or "-"
        return True
