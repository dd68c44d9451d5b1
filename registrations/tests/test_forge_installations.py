"""Forge lifecycle events at POST /forge/events/, tenants, the manifest (issue 17, items 2, 5, 6)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from registrations import forge, forge_manifest
from registrations.models import FitFailureCount, ForgeInstallation, Registration, UsageCount
from registrations.tests.conftest import run
from registrations.tests.factories import RegistrationFactory
from registrations.tests.forge_fixtures import CLOUD_ID, SITE_URL, fit, lifecycle

pytestmark = pytest.mark.django_db
INSTALLATION = "ari:cloud:ecosystem::installation/inst-1"


def test_installed_creates_the_installation_with_its_site(client, forge_jwks):
    assert lifecycle(client, forge_jwks, "installed").status_code == 204
    row = ForgeInstallation.objects.get()
    assert (row.installation_id, row.cloud_id, row.site_url) == (INSTALLATION, CLOUD_ID, SITE_URL)
    assert (row.state, row.environment_type, row.app_version) == ("installed", "PRODUCTION", "3.1.0")
    assert row.installed_at is not None


def test_a_replayed_event_changes_nothing(client, forge_jwks):
    now = int(time.time())
    lifecycle(client, forge_jwks, "installed", iat=now)
    before = ForgeInstallation.objects.values().get()
    assert lifecycle(client, forge_jwks, "installed", iat=now).status_code == 204
    assert ForgeInstallation.objects.values().get() == before


def test_uninstalled_before_installed_stays_uninstalled(client, forge_jwks):
    """Out of order: the uninstall (sent later) overtakes the install; the late install is ignored."""
    now = int(time.time())
    assert lifecycle(client, forge_jwks, "uninstalled", iat=now).status_code == 204
    assert lifecycle(client, forge_jwks, "installed", iat=now - 20).status_code == 204
    assert ForgeInstallation.objects.get().state == "uninstalled"
    # A reinstall after it (a newer event) installs it again, same row.
    assert lifecycle(client, forge_jwks, "installed", iat=now + 5).status_code == 204
    assert ForgeInstallation.objects.get().state == "installed"


def test_upgraded_keeps_it_installed_and_records_the_upgrade(client, forge_jwks):
    now = int(time.time())
    lifecycle(client, forge_jwks, "installed", iat=now - 10)
    lifecycle(client, forge_jwks, "upgraded", iat=now)
    row = ForgeInstallation.objects.get()
    assert row.state == "installed" and row.upgraded_at is not None


def test_events_are_counted_like_connect_calls(client, forge_jwks):
    lifecycle(client, forge_jwks, "installed")
    assert UsageCount.objects.get().module == "forge:lifecycle"


def test_a_token_from_another_module_cannot_report_lifecycle_events(client, forge_jwks):
    """A user's FIT from the identity-proof UI replayed at /forge/events/ must not uninstall a site."""
    token = fit(forge_jwks, module_key="identity-proof-ui")
    body = json.dumps({"eventType": "avi:forge:uninstalled:app"})
    response = client.post(
        "/forge/events/", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 401
    assert not ForgeInstallation.objects.exists()
    assert FitFailureCount.objects.get().reason == "module"


@pytest.mark.parametrize("body", ["", "[]", "{}", '{"eventType": "avi:forge:deleted:app"}', "x" * 70000])
def test_a_bad_body_is_400(client, forge_jwks, body):
    token = fit(forge_jwks, module_key="lifecycle-events")
    response = client.post(
        "/forge/events/", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 400


def test_a_bad_token_is_401_with_a_reason_and_counted(client, forge_jwks):
    token = fit(forge_jwks, module_key="lifecycle-events", iss="not-forge")
    body = json.dumps({"eventType": "avi:forge:installed:app"})
    response = client.post(
        "/forge/events/", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 401 and "Forge" in response.json()["error"]
    response = client.post("/forge/events/", body, content_type="application/json")
    assert response.status_code == 401
    assert dict(FitFailureCount.objects.values_list("reason", "count")) == {"iss": 1, "missing": 1}


def test_a_jwks_answering_5xx_is_503(client, forge_jwks):
    forge_jwks.status = 502
    response = lifecycle(client, forge_jwks, "installed")
    assert response.status_code == 503 and response["Retry-After"]


def test_the_event_answers_in_a_bounded_number_of_queries(client, forge_jwks, django_assert_max_num_queries):
    """Within Forge's 5 s: the FIT (cached keys), the usage count, one locked upsert; the link is a job."""
    lifecycle(client, forge_jwks, "installed")  # warm the key set
    with django_assert_max_num_queries(12):
        lifecycle(client, forge_jwks, "upgraded", iat=int(time.time()) + 1)


# --- one tenant, two platforms ---------------------------------------------------------------------------


def test_forge_installation_links_to_the_connect_registration_by_cloud_id(client, forge_jwks):
    registration = RegistrationFactory(base_url="https://other-name.atlassian.net/wiki", cloud_id=CLOUD_ID)
    lifecycle(client, forge_jwks, "installed")
    assert ForgeInstallation.objects.get().registration == registration


def test_forge_installation_links_by_site_url_when_the_registration_has_no_cloud_id(client, forge_jwks):
    registration = RegistrationFactory(base_url="https://ACME.atlassian.net/wiki")
    lifecycle(client, forge_jwks, "installed")
    assert ForgeInstallation.objects.get().registration == registration


def test_a_connect_install_after_forge_links_the_existing_installation(client, forge_jwks):
    lifecycle(client, forge_jwks, "installed")
    registration = RegistrationFactory(base_url="https://acme.atlassian.net/wiki")
    assert forge.link_registration(client_key=registration.client_key, actor="test") == 1
    assert ForgeInstallation.objects.get().registration == registration


def test_tenants_lists_one_site_with_both_platforms_and_no_secret(client, forge_jwks):
    registration = RegistrationFactory(base_url="https://acme.atlassian.net/wiki", state="enabled")
    RegistrationFactory(base_url="https://connect-only.atlassian.net/wiki")
    lifecycle(client, forge_jwks, "installed")
    lifecycle(
        client,
        forge_jwks,
        "installed",
        installation="inst-2",
        context={"cloudId": "c-2", "siteUrl": "https://forge-only.atlassian.net"},
    )
    tenants = json.loads(run("tenants", "--json"))
    by_site = {t["site_url"]: t for t in tenants}
    assert by_site["https://acme.atlassian.net"]["platforms"] == ["connect", "forge"]
    assert by_site["https://acme.atlassian.net"]["cloud_id"] == CLOUD_ID
    assert by_site["https://connect-only.atlassian.net"]["platforms"] == ["connect"]
    assert by_site["https://forge-only.atlassian.net"]["platforms"] == ["forge"]
    assert all(t["state"] == "installed" and t["installed_at"] for t in tenants)
    text = run("tenants")
    assert "acme.atlassian.net" in text and "3 tenant(s)" in text
    assert registration.shared_secret not in text + json.dumps(tenants)


def test_a_site_that_uninstalls_forge_and_keeps_connect_stays_a_tenant(client, forge_jwks):
    RegistrationFactory(base_url="https://acme.atlassian.net/wiki", state="enabled")
    lifecycle(client, forge_jwks, "installed", iat=int(time.time()) - 5)
    lifecycle(client, forge_jwks, "uninstalled")
    (tenant,) = forge.list_tenants()
    assert tenant.state == "installed"
    assert {p["platform"]: p["state"] for p in tenant.platforms} == {
        "connect": "enabled",
        "forge": "uninstalled",
    }
    assert Registration.objects.get().state == "enabled"  # the Connect side is untouched


# --- the manifest ----------------------------------------------------------------------------------------


def committed_settings(settings):
    settings.APP_BASE_URL = forge_manifest.COMMITTED_SETTINGS["APP_BASE_URL"]
    settings.FORGE_MANIFEST_APP_ID = ""
    settings.FORGE_APP_IDS = []
    settings.CONNECT_APP_KEY = "com.artemis-software.privacy"


def test_the_committed_manifest_matches_the_descriptor(settings):
    committed_settings(settings)
    assert "matches" in run("forge_manifest", "--check")


def test_the_manifest_check_fails_when_the_descriptor_drifts(settings, tmp_path):
    committed_settings(settings)
    path = tmp_path / "manifest.yml"
    run("forge_manifest", "--path", str(path))
    settings.CONNECT_SCOPES = ["READ", "WRITE"]  # a new scope in the descriptor, not in the file
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="drifted"):
        run("forge_manifest", "--check", "--path", str(path))


def test_the_manifest_keeps_the_connect_key_remote_modules_and_routes_the_events(settings):
    import yaml

    committed_settings(settings)
    manifest = yaml.safe_load(forge_manifest.render())
    assert manifest["app"]["connect"]["key"] == "com.artemis-software.privacy"
    assert manifest["remotes"][0]["baseUrl"] == "https://privacy.example.com"
    assert manifest["connectModules"]["confluence:generalPages"][0]["key"] == "identity-proof"
    (trigger,) = manifest["modules"]["trigger"]
    assert set(trigger["events"]) == set(forge.EVENTS)
    routes = {e["key"]: e["route"]["path"] for e in manifest["modules"]["endpoint"]}
    assert routes[trigger["endpoint"]] == "/forge/events/"
    assert "/forge/identity-proof/" in routes.values()


def test_dev_py_checks_the_manifest_with_the_committed_settings():
    sys.path.insert(0, str(Path(django_settings.BASE_DIR)))
    import dev

    env = dev.forge_manifest_env()
    assert {
        name: env[name] for name in forge_manifest.COMMITTED_SETTINGS
    } == forge_manifest.COMMITTED_SETTINGS


def test_forge_manifest_check_runs_as_a_command_line(tmp_path):
    """What dev.py test runs, as a separate process with the committed settings."""
    sys.path.insert(0, str(Path(django_settings.BASE_DIR)))
    import dev

    result = subprocess.run(
        [sys.executable, "manage.py", "forge_manifest", "--check"],
        cwd=django_settings.BASE_DIR,
        env=dev.forge_manifest_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_events_for_one_installation_make_one_row_and_no_error():
    """Forge may deliver an event twice at once: the second insert retries against the first's row."""
    import threading

    from django.db import connection

    from registrations.forge_jwt import ForgeContext

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for real concurrent connections")
    now = int(time.time())
    context = ForgeContext(
        app_id="7d3b1f0e-4c55-4b1e-9a2f-1c0ffee00001",
        installation_id=INSTALLATION,
        cloud_id=CLOUD_ID,
        site_url=SITE_URL,
        environment_type="PRODUCTION",
        environment_id="",
        account_id=None,
        module_key="lifecycle-events",
        claims={"iat": now},
    )
    outcomes, errors = [], []
    barrier = threading.Barrier(4)

    def worker():
        try:
            barrier.wait()
            outcomes.append(
                forge.apply_event(event="avi:forge:installed:app", context=context, actor="t").outcome
            )
        except Exception as exc:  # noqa: BLE001 (collected and asserted below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert ForgeInstallation.objects.count() == 1
    assert sorted(outcomes).count("created") == 1 and len(outcomes) == 4


def test_a_connect_install_with_the_sites_cloud_id_links_its_forge_installation(
    client, forge_jwks, key_service, rsa_key
):
    """Through the real Connect lifecycle view: the install payload's cloudId links the Forge side (a job)."""
    from registrations.tests.conftest import APP_KEY, install_token

    lifecycle(
        client,
        forge_jwks,
        "installed",
        context={"cloudId": CLOUD_ID, "siteUrl": "https://renamed.atlassian.net"},
    )
    key_service.keys["k1"] = rsa_key.public_pem
    body = {
        "key": APP_KEY,
        "eventType": "installed",
        "clientKey": "connect-side",
        "sharedSecret": "s" * 40,
        "baseUrl": "https://acme.atlassian.net/wiki",
        "productType": "confluence",
        "cloudId": CLOUD_ID,
    }
    response = client.post(
        "/connect/installed",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"JWT {install_token(rsa_key, 'k1', 'connect-side')}",
    )
    assert response.status_code == 204
    assert Registration.objects.get().cloud_id == CLOUD_ID
    assert ForgeInstallation.objects.get().registration.client_key == "connect-side"
