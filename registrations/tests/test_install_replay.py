"""Signed lifecycle tokens work once (SECURITY.md, "Security round two", item 2).

The signature of a signed install covers the method, path and query, not the body: a captured token
replayed with another body (another shared secret) must be refused, however soon.
"""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from registrations import install_tokens
from registrations.models import InstallTokenUse, Registration
from registrations.tests.conftest import install_token
from registrations.tests.test_views import KID, install_body, post, signed  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


def _reason(response):
    return response.json()["error"]


def test_attack_a_signed_install_replayed_with_another_secret_is_refused(client, signed):  # noqa: F811
    body = install_body()
    token = signed(body)
    assert post(client, "installed", body, token).status_code == 204
    secret = Registration.objects.get(client_key=body["clientKey"]).shared_secret

    forged = {**body, "sharedSecret": "attacker-chosen-secret-" + "x" * 20}
    response = post(client, "installed", forged, token)

    assert response.status_code == 401
    assert _reason(response) == "This signed token has been used already."
    assert Registration.objects.get(client_key=body["clientKey"]).shared_secret == secret


def test_attack_a_signed_token_without_a_jti_is_remembered_by_its_hash(client, signed):  # noqa: F811
    body = install_body()
    token = signed(body, jti=...)
    assert post(client, "installed", body, token).status_code == 204
    response = post(client, "installed", {**body, "baseUrl": "https://other.atlassian.net"}, token)
    assert response.status_code == 401 and _reason(response) == "This signed token has been used already."


def test_attack_a_replayed_signed_uninstall_is_refused(client, signed, rsa_key):  # noqa: F811
    body = install_body()
    assert post(client, "installed", body, signed(body)).status_code == 204
    uninstall = {"key": body["key"], "clientKey": body["clientKey"], "eventType": "uninstalled"}
    token = install_token(rsa_key, KID, body["clientKey"], "/connect/uninstalled")
    assert post(client, "uninstalled", uninstall, token).status_code == 204
    assert post(client, "installed", body, signed(body)).status_code == 204  # reinstalled
    replay = post(client, "uninstalled", uninstall, token)
    assert replay.status_code == 401 and _reason(replay) == "This signed token has been used already."
    assert Registration.objects.get(client_key=body["clientKey"]).state == Registration.State.INSTALLED


def test_two_distinct_tokens_for_the_same_site_both_work(client, signed):  # noqa: F811
    body = install_body()
    assert post(client, "installed", body, signed(body)).status_code == 204
    assert post(client, "installed", body, signed(body)).status_code == 204
    assert InstallTokenUse.objects.count() == 2


def test_a_refused_install_leaves_its_token_unspent(client, signed):  # noqa: F811
    body = install_body()
    token = signed(body)
    bad = post(client, "installed", {**body, "baseUrl": "https://acme.example.com"}, token)
    assert bad.status_code == 400
    assert post(client, "installed", body, token).status_code == 204


def test_records_of_expired_tokens_are_deleted_by_the_next_install(client, signed):  # noqa: F811
    with time_machine.travel(datetime(2026, 3, 1, 12, 0, tzinfo=UTC), tick=False):
        body = install_body()
        assert post(client, "installed", body, signed(body)).status_code == 204
        assert InstallTokenUse.objects.count() == 1
    with time_machine.travel(datetime(2026, 3, 1, 12, 0, tzinfo=UTC) + timedelta(hours=1), tick=False):
        body = install_body()
        assert post(client, "installed", body, signed(body)).status_code == 204
        assert InstallTokenUse.objects.count() == 1


def test_the_record_names_the_token_by_hash_only():
    claims = {"iss": "site", "jti": "abc", "exp": 2_000_000_000}
    install_tokens.spend(token="header.payload.signature", claims=claims)
    (row,) = InstallTokenUse.objects.all()
    assert len(row.token_hash) == 64 and "abc" not in row.token_hash
    with pytest.raises(install_tokens.TokenReplayed):
        install_tokens.spend(token="another.token.entirely", claims=claims)


def test_an_exp_beyond_the_calendar_is_kept_for_good_not_a_500():
    install_tokens.spend(token="t.t.t", claims={"iss": "site", "exp": 10**20})
    assert InstallTokenUse.objects.get().expires_at == install_tokens.FOREVER
