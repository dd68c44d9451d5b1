"""Log lines: one per request with its id, and no email addresses or secrets in any line."""

import io
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from artemis_portal.logging import EMAIL, ClientRefusalFilter, RedactingFilter, redact


@pytest.mark.parametrize(
    ("raw", "hidden"),
    [
        ("user jane.doe+x@example.co.uk asked", "jane.doe+x@example.co.uk"),
        ("Authorization: JWT eyJhbGciOi.eyJpc3MiOi.c2lnbmF0dXJl", "eyJpc3MiOi"),
        ("sharedSecret=Zm9vYmFyYmF6cXV4", "Zm9vYmFyYmF6cXV4"),
        ('{"password": "hunter2hunter2"}', "hunter2hunter2"),
        (
            "key gAAAAABlZ2V0dGluZ3RoaXNpc2F2ZXJ5bG9uZ2Zlcm5ldHRva2Vu",
            "gAAAAABlZ2V0dGluZ3RoaXNpc2F2ZXJ5bG9uZ2Zlcm5ldHRva2Vu",
        ),
        # A status token in a path, and a standard-base64 key with slashes: both still masked.
        ("GET /requests/status/" + "ab12" * 16 + "/ 200", "ab12" * 16),
        ("key q3Vx/9kLmN2pQ+rsT/uvWxYz0123AbCdEfGhIjKl=", "q3Vx/9kLmN2pQ+rsT/uvWxYz0123AbCdEfGhIjKl"),
    ],
)
def test_redact_hides_emails_and_secrets(raw, hidden):
    assert hidden not in redact(raw)


@pytest.mark.parametrize(
    "kept",
    [
        "account 557058:f0c4e8a4-4b8c-4b1a-9f0e-1a2b3c4d5e6f",
        "account 5b10ac8d82e05b22cc7d4ef5",
        "client key 6f1c2d3e-aaaa-bbbb-cccc-123456789abc",
        "GET /admin/dsr_requests/rightsrequest/12/change/ 200 19.6ms",
        "POST /admin/registrations/registration/?state__exact=enabled 302",
    ],
)
def test_redact_keeps_account_ids_and_client_keys(kept):
    assert redact(kept) == kept


@given(st.text(), st.emails())
def test_no_email_survives_redaction(prefix, email):
    assert not EMAIL.search(redact(f"{prefix} {email} tail"))


def test_filter_redacts_arguments_and_exception_text():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "user %s", ("a@b.example",), None)
    try:
        raise ValueError("bad secret=abcdefghijkl for a@b.example")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    assert "a@b.example" not in record.getMessage()
    assert "a@b.example" not in record.exc_text and "abcdefghijkl" not in record.exc_text


@pytest.mark.django_db
def test_each_request_logs_one_line_with_its_id_and_without_the_query(client, caplog):
    caplog.set_level(logging.INFO, logger="artemis.access")
    response = client.get("/?jwt=eyJsecret.eyJsecret.sig", HTTP_X_REQUEST_ID="router-abc-12345")
    assert response["X-Request-ID"] == "router-abc-12345"
    lines = [r for r in caplog.records if r.name == "artemis.access"]
    assert len(lines) == 1
    assert lines[0].getMessage().startswith("GET / 200")
    assert "jwt" not in lines[0].getMessage()


@pytest.mark.django_db
def test_forged_request_id_is_replaced(client):
    response = client.get("/", HTTP_X_REQUEST_ID="bad id\nINFO forged line")
    assert "\n" not in response["X-Request-ID"] and len(response["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_a_foreign_host_header_is_one_warning_line_without_a_traceback(client):
    handler = next(
        h for h in logging.getLogger().handlers if any(isinstance(f, ClientRefusalFilter) for f in h.filters)
    )
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        response = client.get("/", HTTP_HOST="scanner.invalid")
    finally:
        handler.setStream(previous)
    assert response.status_code == 400
    output = buffer.getvalue()
    refusals = [line for line in output.splitlines() if "django.security.DisallowedHost" in line]
    assert len(refusals) == 1 and refusals[0].startswith("WARNING ")
    assert "Traceback" not in output


def test_a_secret_in_a_url_path_is_masked_and_the_page_is_still_named():
    token = "0123456789abcdef" * 4
    assert redact(f"GET /requests/status/{token}/ 200 3.1ms") == "GET /requests/status/[redacted]/ 200 3.1ms"
    assert redact(f"GET /requests/transfer/{token}/ 200") == "GET /requests/transfer/[redacted]/ 200"


def _plain_redact(text):
    """The four substitutions with no shortcut: what ``redact`` must always equal."""
    from artemis_portal.logging import JWT, LABELLED, LONG_OPAQUE, MASK, _mask_unless_path

    text = EMAIL.sub("[email]", text)
    text = JWT.sub(MASK, text)
    text = LABELLED.sub(lambda m: m.group(1) + MASK, text)
    return LONG_OPAQUE.sub(_mask_unless_path, text)


def test_the_label_shortcut_knows_every_character_that_matches_a_label_letter_ignoring_case():
    # (?i) matches a few characters outside ASCII to ASCII letters that str.lower() leaves alone; the
    # shortcut folds exactly those before looking for a label. Checked against every code point.
    import re

    from artemis_portal.logging import _CASE_FOLD

    letters = set(
        "".join(("authorization", "bearer", "jwt", "secret", "passwd", "token", "api", "fernet_keys"))
    )
    any_letter = re.compile("(?i)[" + re.escape("".join(sorted(letters))) + "]")
    for code_point in range(0x80, 0x110000):
        char = chr(code_point)
        if any_letter.fullmatch(char) and char.lower() not in letters:
            assert char.translate(_CASE_FOLD) in letters, hex(code_point)


@pytest.mark.parametrize(
    "raw",
    [
        "ſecret=abcdefgh",
        "AUTHORİZATION: JWT abcdefgh",
        "authorızation=abcdefgh",
        "TOKEN=abcdefgh",
        "tOkEn abcdefgh",
    ],
)
def test_labels_written_with_look_alike_letters_are_still_redacted(raw):
    assert "abcdefgh" not in redact(raw)


_PIECES = st.sampled_from(
    [
        "authorization",
        "Bearer ",
        "jwt=",
        "secret",
        "sharedSecret",
        "shared_secret",
        "password",
        "passwd",
        "token",
        "api_key",
        "API-KEY",
        "apikey",
        "fernet_keys",
        "secret_key",
        "ſ",
        "İ",
        "ı",
        "K",
        "@",
        "=",
        ":",
        " ",
        '"',
        "'",
        "eyJ",
        ".",
        "/",
        "a@b.co",
        "abcdefgh",
        "x" * 40,
        "GET /requests/status/",
        "\n",
    ]
)


@given(st.lists(st.one_of(_PIECES, st.text(max_size=12)), max_size=14).map("".join))
def test_redact_with_its_shortcuts_equals_the_four_plain_substitutions(text):
    assert redact(text) == _plain_redact(text)
