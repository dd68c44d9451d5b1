"""Forge test fixtures: a real https JWKS server on loopback and FIT builders using PyJWT directly.

The server's certificate is self-signed, made at test time with ``cryptography``; the JWKS fetch trusts
it through ``FORGE_JWKS_CA_BUNDLE`` (a setting only tests set), so TLS verification stays on. Import the
fixtures into a ``conftest.py`` to use them (registrations' and dsr_requests' do).
"""

import datetime as dt
import ipaddress
import json
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt as pyjwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

from registrations import forge_keys

APP_ID = "7d3b1f0e-4c55-4b1e-9a2f-1c0ffee00001"
OTHER_APP_ID = "7d3b1f0e-4c55-4b1e-9a2f-1c0ffee00002"
UNCONFIGURED_APP_ID = "7d3b1f0e-4c55-4b1e-9a2f-1c0ffee0dead"
CLOUD_ID = "a1b2c3d4-0000-4000-8000-00000000c10d"
SITE_URL = "https://acme.atlassian.net"
ACCOUNT = "557058:0e50fccb-239d-4991-a5db-dc850ba3f236"


def _self_signed(directory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "jwks-cert.pem", directory / "jwks-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class Jwks:
    """What the stand-in for Forge's JWKS serves: ``keys`` by kid, or a forced ``status``; ``hits`` counts
    every request the server received."""

    def __init__(self):
        self.keys = {}
        self.status = None
        self.hits = 0

    def add(self, kid):
        """A new signing key published under ``kid``; returns its private key."""
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.keys[kid] = private
        return private

    def document(self):
        entries = []
        for kid, private in self.keys.items():
            jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
            entries.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": entries}


@pytest.fixture(scope="session")
def _jwks_certificate(tmp_path_factory):
    return _self_signed(tmp_path_factory.mktemp("forge-jwks"))


@pytest.fixture
def forge_jwks(settings, _jwks_certificate):
    """A real https server on 127.0.0.1 serving a JWKS; FORGE_JWKS_URL and the CA bundle point at it."""
    state = Jwks()
    state.add("forge-key-1")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            state.hits += 1
            if state.status is not None:
                status, body = state.status, b"error"
            else:
                status, body = 200, json.dumps(state.document()).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    cert_path, key_path = _jwks_certificate
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    settings.FORGE_JWKS_URL = f"https://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    settings.FORGE_JWKS_CA_BUNDLE = str(cert_path)
    settings.FORGE_APP_IDS = [APP_ID, OTHER_APP_ID]
    forge_keys.clear_local()
    yield state
    forge_keys.clear_local()
    server.shutdown()
    server.server_close()


def fit(
    jwks,
    *,
    kid="forge-key-1",
    app_id=APP_ID,
    installation="inst-1",
    cloud_id=CLOUD_ID,
    site_url=SITE_URL,
    principal=ACCOUNT,
    module_key="identity-proof-ui",
    iat=None,
    key=None,
    algorithm="RS256",
    **claims,
):
    """A Forge invocation token as Forge makes it; a claim set to ``...`` is left out."""
    now = int(time.time()) if iat is None or iat is Ellipsis else iat
    payload = {
        "iss": "forge/invocation-token",
        "aud": f"ari:cloud:ecosystem::app/{app_id}",
        "iat": now if iat is not Ellipsis else ...,
        "nbf": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
        "app": {
            "id": f"ari:cloud:ecosystem::app/{app_id}",
            "installationId": f"ari:cloud:ecosystem::installation/{installation}",
            "environment": {"type": "PRODUCTION", "id": "ari:cloud:ecosystem::environment/env-1"},
            "module": {"key": module_key, "type": "core:endpoint"},
        },
        "context": {"cloudId": cloud_id, "siteUrl": site_url},
        "principal": principal,
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not Ellipsis}
    if key is None:
        key = jwks.keys[kid]
    return pyjwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


def lifecycle(client, jwks, event, *, installation="inst-1", iat=None, **claims):
    """POST one Forge lifecycle event as the trigger module sends it; returns the response."""
    token = fit(
        jwks, installation=installation, module_key="lifecycle-events", principal=..., iat=iat, **claims
    )
    body = {"eventType": f"avi:forge:{event}:app", "app": {"id": APP_ID, "version": "3.1.0"}}
    return client.post(
        "/forge/events/",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
