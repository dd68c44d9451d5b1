#!/usr/bin/env python3
"""Per-call cost of verifying one Connect request token: ours vs atlassian-jwt's Authenticator.

    ENV_FILE= DEBUG=1 /path/to/venv/bin/python bench/connect_jwt_verify.py [--calls 20000] [--repeat 5]

Both verify the same HS256 token for the same request on the same machine. Ours
(``registrations.jwt.authenticate_request``) also pins the algorithm, requires ``exp``, finds the tenant
in the Django cache (warm, with the secret Fernet-encrypted in the cache and decrypted per call),
checks its state and builds the ``Registration``. atlassian-jwt gets its secret from a plain dict.
Uses a throw-away SQLite database in a temporary folder; prints the best of ``--repeat`` runs.
"""

import argparse
import os
import secrets
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="connect-bench-")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp}/bench.sqlite3")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "artemis_portal.settings")
    import django

    django.setup()
    import atlassian_jwt
    import jwt as pyjwt
    from django.conf import settings
    from django.core.management import call_command
    from django.test import RequestFactory
    from django.utils import timezone

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
    url = f"{settings.APP_BASE_URL}{path}?{query}"
    now = int(time.time())
    claims = {
        "iss": tenant.client_key,
        "sub": "557058:0e50fccb-239d-4991-a5db-dc850ba3f236",
        "iat": now,
        "exp": now + 3600,
        "qsh": atlassian_jwt.url_utils.hash_url("GET", f"{path}?{query}"),
    }
    token = pyjwt.encode(claims, secret, algorithm="HS256")
    headers = {"Authorization": f"JWT {token}"}

    request = RequestFactory().get(f"{path}?{query}", HTTP_AUTHORIZATION=f"JWT {token}")
    assert authenticate_request(request).tenant.client_key == tenant.client_key  # also warms the cache

    class Addon(atlassian_jwt.Authenticator):
        def __init__(self, store):
            super().__init__()
            self.store = store

        def get_shared_secret(self, client_key):
            return self.store[client_key]

    addon = Addon({tenant.client_key: secret})
    assert addon.authenticate("GET", url, headers).client_key == tenant.client_key

    def ours():
        authenticate_request(request)

    def theirs():
        addon.authenticate("GET", url, headers)

    results = {}
    for name, func in (
        ("registrations.jwt.authenticate_request", ours),
        ("atlassian_jwt.Authenticator", theirs),
    ):
        best = min(timeit.repeat(func, number=args.calls, repeat=args.repeat))
        results[name] = best / args.calls * 1e6
    cache_backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(f"calls per run: {args.calls}, runs: {args.repeat} (best shown), cache: {cache_backend}")
    for name, micros in results.items():
        print(f"{name:42s} {micros:8.1f} µs/call")
    ours_us, theirs_us = results.values()
    print(f"ours / atlassian-jwt: {ours_us / theirs_us:.2f}")


if __name__ == "__main__":
    main()
