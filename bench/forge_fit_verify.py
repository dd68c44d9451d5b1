#!/usr/bin/env python3
"""Per-call cost of verifying a Forge invocation token (FIT) beside a Connect request token, one run.

    ENV_FILE= DEBUG=1 /path/to/venv/bin/python bench/forge_fit_verify.py [--calls 5000] [--repeat 5]

Three timings on the same machine in the same process, best of ``--repeat`` runs:

- ``registrations.jwt.authenticate_request``: the Connect HS256 request token (as bench/connect_jwt_verify.py,
  warm tenant cache);
- ``registrations.forge_jwt.verify_token``: the FIT, RS256 (2048-bit), key from the warm JWKS copy (served
  once by a loopback HTTP server), ``iss``/``aud``/``exp``/``nbf``/``iat`` and the claims' shapes;
- ``jwt.decode`` RS256 alone on the same FIT with the key in hand: the floor (signature + standard claims).

Uses a throw-away SQLite database in a temporary folder.
"""

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import timeit
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
APP_ID = "7d3b1f0e-4c55-4b1e-9a2f-1c0ffee00001"


def serve_jwks(document):
    body = json.dumps(document).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="forge-bench-")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp}/bench.sqlite3")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artemis_portal.settings")
    os.environ["FORGE_APP_IDS"] = APP_ID
    import django
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {
        **json.loads(RSAAlgorithm.to_jwk(private.public_key())),
        "kid": "bench-1",
        "alg": "RS256",
        "use": "sig",
    }
    server = serve_jwks({"keys": [jwk]})
    os.environ["FORGE_JWKS_URL"] = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    django.setup()
    import atlassian_jwt
    import jwt as pyjwt
    from django.conf import settings
    from django.core.management import call_command
    from django.test import RequestFactory
    from django.utils import timezone

    from registrations import forge_jwt
    from registrations.jwt import authenticate_request
    from registrations.models import Registration

    call_command("migrate", verbosity=0)
    secret = secrets.token_urlsafe(32)
    tenant = Registration.objects.create(
        client_key="bench-" + secrets.token_hex(8),
        shared_secret=secret,
        base_url="https://acme.atlassian.net/wiki",
        product_type="confluence",
        state=Registration.State.ENABLED,
        installed_at=timezone.now(),
        updated_at=timezone.now(),
    )
    path = "/connect/identity-proof"
    query = "cp=%2Fwiki&lic=active&spaceKey=ENG&user_locale=en-GB&xdm_e=https%3A%2F%2Facme.atlassian.net"
    now = int(time.time())
    connect_token = pyjwt.encode(
        {
            "iss": tenant.client_key,
            "sub": "557058:0e50fccb-239d-4991-a5db-dc850ba3f236",
            "iat": now,
            "exp": now + 3600,
            "qsh": atlassian_jwt.url_utils.hash_url("GET", f"{path}?{query}"),
        },
        secret,
        algorithm="HS256",
    )
    request = RequestFactory().get(f"{path}?{query}", HTTP_AUTHORIZATION=f"JWT {connect_token}")
    assert authenticate_request(request).tenant.client_key == tenant.client_key

    fit = pyjwt.encode(
        {
            "iss": "forge/invocation-token",
            "aud": f"ari:cloud:ecosystem::app/{APP_ID}",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "app": {
                "id": f"ari:cloud:ecosystem::app/{APP_ID}",
                "installationId": "ari:cloud:ecosystem::installation/0e50fccb-239d-4991-a5db-dc850ba3f236",
                "environment": {"type": "PRODUCTION", "id": "ari:cloud:ecosystem::environment/e-1"},
                "module": {"key": "forge-identity-proof", "type": "core:endpoint"},
            },
            "context": {
                "cloudId": "a1b2c3d4-0000-4000-8000-00000000c10d",
                "siteUrl": "https://acme.atlassian.net",
            },
            "principal": "557058:0e50fccb-239d-4991-a5db-dc850ba3f236",
        },
        private,
        algorithm="RS256",
        headers={"kid": "bench-1"},
    )
    assert forge_jwt.verify_token(fit).app_id == APP_ID  # also fetches and caches the key set
    public = private.public_key()
    audience = f"ari:cloud:ecosystem::app/{APP_ID}"

    def connect():
        authenticate_request(request)

    def forge():
        forge_jwt.verify_token(fit)

    def floor():
        pyjwt.decode(fit, public, algorithms=["RS256"], audience=audience, issuer="forge/invocation-token")

    results = {}
    for name, func in (
        ("Connect: registrations.jwt.authenticate_request", connect),
        ("Forge: registrations.forge_jwt.verify_token", forge),
        ("floor: jwt.decode RS256, key in hand", floor),
    ):
        best = min(timeit.repeat(func, number=args.calls, repeat=args.repeat))
        results[name] = best / args.calls * 1e6
    server.shutdown()
    cache_backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(f"calls per run: {args.calls}, runs: {args.repeat} (best shown), cache: {cache_backend}")
    for name, micros in results.items():
        print(f"{name:50s} {micros:8.1f} µs/call")
    connect_us, forge_us, floor_us = results.values()
    print(f"forge / connect: {forge_us / connect_us:.2f}   forge / floor: {forge_us / floor_us:.2f}")


if __name__ == "__main__":
    main()
