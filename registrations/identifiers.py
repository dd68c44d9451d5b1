"""What a client key and an Atlassian account ID may look like, and how they are written to the log."""

import re

# iss (a client key, at most the column's 255) and sub (an account ID): printable text, no control
# characters or lone surrogates, which no database column or log line should receive.
CLIENT_KEY = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]{1,255}")
ACCOUNT_ID = re.compile(r"[\x21-\x7e]{1,128}")
# Client keys and account IDs are logged only when they look like one (no "@", no spaces), so a forged
# token cannot write arbitrary text, or an email address, into the log.
SAFE_LOG_VALUE = re.compile(r"[A-Za-z0-9:._-]{1,128}")


def log_value(value):
    """``value`` if it is safe to write to the log as an identifier, else ``-``."""
    return value if isinstance(value, str) and SAFE_LOG_VALUE.fullmatch(value) else "-"
