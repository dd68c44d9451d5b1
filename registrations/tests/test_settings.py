"""The Connect settings section: an insecure install-key URL stops a production start-up."""

from artemis_portal.tests.test_settings import PRODUCTION, manage


def test_production_refuses_a_plain_http_install_key_service():
    result = manage("check", **PRODUCTION, CONNECT_INSTALL_KEYS_URL="http://keys.example.com")
    assert result.returncode != 0
    assert "CONNECT_INSTALL_KEYS_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_development_may_use_a_local_http_install_key_service():
    result = manage("check", DEBUG="1", CONNECT_INSTALL_KEYS_URL="http://127.0.0.1:8001")
    assert result.returncode == 0, result.stderr


def test_production_refuses_a_plain_http_forge_jwks_url():
    result = manage("check", **PRODUCTION, FORGE_JWKS_URL="http://forge.example.com/jwks.json")
    assert result.returncode != 0
    assert "FORGE_JWKS_URL" in result.stderr and "https" in result.stderr
    assert "Traceback" not in result.stderr


def test_development_may_use_a_local_http_forge_jwks_url():
    result = manage("check", DEBUG="1", FORGE_JWKS_URL="http://127.0.0.1:8002/jwks.json")
    assert result.returncode == 0, result.stderr


def test_forge_app_ids_must_be_uuids():
    result = manage("check", DEBUG="1", FORGE_APP_IDS="7d3b1f0e-4c55-4b1e-9a2f-1c0ffee00001, not-a-uuid")
    assert result.returncode != 0
    assert "FORGE_APP_IDS" in result.stderr and "not-a-uuid" in result.stderr
    assert "Traceback" not in result.stderr


def test_forge_app_ids_are_a_comma_separated_list():
    from artemis_portal.config import parse_uuid_list

    ids = parse_uuid_list(
        "FORGE_APP_IDS", " 7D3B1F0E-4C55-4B1E-9A2F-1C0FFEE00001,,7d3b1f0e-4c55-4b1e-9a2f-1c0ffee00002 "
    )
    assert ids == ["7d3b1f0e-4c55-4b1e-9a2f-1c0ffee00001", "7d3b1f0e-4c55-4b1e-9a2f-1c0ffee00002"]
