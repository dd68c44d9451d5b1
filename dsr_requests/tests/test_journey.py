"""The requester's whole journey: form, email, confirmation, status page, code, Connect page, verified.

Once with Django's captured mail, once through a real SMTP server (aiosmtpd, the ``smtp_server``
fixture of the root conftest) on loopback.
"""

import time
import uuid

import jwt as pyjwt
import pytest
from django.db import connection

from dsr_requests.models import RequestState, RightsRequest
from dsr_requests.tests.conftest import link_in
from registrations.tests.factories import RegistrationFactory

FORM = {
    "request_type": "copy",
    "name": "Grace Hopper",
    "email": "grace@example.org",
    "site_url": "https://navy.atlassian.net/wiki",
    "details": "Everything you hold about me, please.",
}


def page_token(tenant, *, sub):
    """A Connect page-load token as Atlassian signs it (context qsh), built with PyJWT directly."""
    now = int(time.time())
    claims = {"iss": tenant.client_key, "iat": now, "exp": now + 180, "qsh": "context-qsh", "sub": sub}
    claims = {name: value for name, value in claims.items() if value is not Ellipsis}
    return pyjwt.encode(claims, tenant.shared_secret, algorithm="HS256")


def walk_the_journey(client, committed, read_messages):
    """Submit, confirm, open the status page, get a code and enter it in the Connect page."""
    with committed():
        assert client.post("/requests/new/", FORM).status_code == 302
    (received,) = read_messages()
    assert received["subject"].startswith("Please confirm your email address")
    confirm = link_in(received["text"], "/requests/confirm/")
    assert confirm in received["html"].replace("&amp;", "&")

    with committed():
        response = client.post(confirm)
    status_path = response["Location"]
    (confirmed,) = read_messages()
    assert link_in(confirmed["text"], "/requests/status/") == status_path
    assert "Checking identity" in client.get(status_path).content.decode()

    code = client.post(status_path + "code/").context["account_code"]
    tenant = RegistrationFactory(base_url="https://navy.atlassian.net/wiki")
    account_id = f"557058:{uuid.uuid4()}"
    token = page_token(tenant, sub=account_id)
    assert client.get(f"/connect/identity-proof/?jwt={token}").status_code == 200
    with committed():
        response = client.post(f"/connect/identity-proof/?jwt={token}", {"code": code.lower()})
    assert response.status_code == 200
    assert "Account confirmed" in response.content.decode()
    (verified,) = read_messages()
    assert "your identity is verified" in verified["subject"]

    request = RightsRequest.objects.get()
    assert request.state == RequestState.IN_REVIEW
    assert (request.account_id, request.site_client_key) == (account_id, tenant.client_key)
    page = client.get(status_path).content.decode()
    assert "In review" in page and "Atlassian account confirmed" in page and "Identity verified" in page
    return request


def assert_no_plain_personal_data_in_the_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, email, details, site_url FROM dsr_requests_rightsrequest")
        raw = b"".join(bytes(value) for row in cursor.fetchall() for value in row)
        cursor.execute('SELECT "to", body_text FROM dsr_requests_outboundemail')
        raw += b"".join(bytes(value) for row in cursor.fetchall() for value in row)
    assert b"Grace" not in raw and b"grace@example.org" not in raw and b"navy" not in raw


@pytest.mark.django_db
def test_journey_with_captured_mail(client, committed, mailoutbox):
    seen = []

    def read_messages():
        new = mailoutbox[len(seen) :]
        seen.extend(new)
        return [{"subject": m.subject, "text": m.body, "html": m.alternatives[0][0]} for m in new]

    walk_the_journey(client, committed, read_messages)
    assert_no_plain_personal_data_in_the_database()


@pytest.mark.django_db
def test_journey_through_a_real_smtp_server(client, committed, smtp_server):
    seen = []

    def read_messages():
        new = smtp_server.messages[len(seen) :]
        seen.extend(new)
        parsed = []
        for recipients, message in new:
            assert recipients == ["grace@example.org"]
            parsed.append(
                {
                    "subject": message["Subject"],
                    "text": message.get_body(("plain",)).get_content(),
                    "html": message.get_body(("html",)).get_content(),
                }
            )
        return parsed

    request = walk_the_journey(client, committed, read_messages)
    assert all(sent.status == "sent" for sent in request.emails.all())
    assert_no_plain_personal_data_in_the_database()
