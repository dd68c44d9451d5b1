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
