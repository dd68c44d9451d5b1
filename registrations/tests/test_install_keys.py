"""Install-key fetching against a real HTTP server on loopback."""

import pytest

from registrations import install_keys


def test_key_is_fetched_by_kid_and_cached(key_service, rsa_key):
    key_service.keys["k1"] = rsa_key.public_pem
    assert install_keys.public_key("k1") == rsa_key.public_pem
    assert install_keys.public_key("k1") == rsa_key.public_pem
    assert key_service.requests == ["/k1"]


def test_unknown_kid_is_none_and_not_cached(key_service, rsa_key):
    assert install_keys.public_key("k2") is None
    key_service.keys["k2"] = rsa_key.public_pem
    assert install_keys.public_key("k2") == rsa_key.public_pem


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_raise_key_service_unavailable(key_service, status):
    key_service.status = status
    with pytest.raises(install_keys.KeyServiceUnavailable):
        install_keys.public_key("k3")


def test_oversized_answer_raises_key_service_unavailable(key_service):
    key_service.body = b"A" * (install_keys.MAX_KEY_BYTES + 10)
    with pytest.raises(install_keys.KeyServiceUnavailable):
        install_keys.public_key("k4")


def test_non_rsa_key_raises_key_service_unavailable(key_service):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key_service.body = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(install_keys.KeyServiceUnavailable):
        install_keys.public_key("k5")


@pytest.mark.parametrize("kid", ["", ".", "..", "a/b", "a b", "x" * 201, "ключ", "kid\n"])
def test_kids_that_could_escape_the_url_path_are_not_valid(kid):
    assert not install_keys.valid_kid(kid)


def test_ordinary_kids_are_valid():
    assert install_keys.valid_kid("prod-key-1")
    assert install_keys.valid_kid("0e50fccb-239d-4991-a5db-dc850ba3f236")
