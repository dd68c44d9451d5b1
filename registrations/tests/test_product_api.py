"""Outbound calls to a tenant's REST API, received by a real HTTP server on loopback."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt as pyjwt
import pytest
import requests
from atlassian_jwt.url_utils import hash_url

from registrations import product_api
from registrations.tests.conftest import APP_KEY
from registrations.tests.factories import RegistrationFactory


@pytest.fixture
def product():
    """A stand-in Confluence at http://127.0.0.1:<port>/wiki recording what it receives."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            received.append({"path": self.path, "authorization": self.headers.get("Authorization")})
            if "slow" in self.path:
                time.sleep(1)
            body = json.dumps({"results": []}).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/wiki", received
    server.shutdown()
    server.server_close()


def test_call_signs_the_exact_request_and_sends_the_token_in_the_header(product):
    base_url, received = product
    tenant = RegistrationFactory.build(base_url=base_url)
    response = product_api.call(tenant, "get", "/rest/api/space", params={"limit": "10", "q": "a b"})
    assert response.status_code == 200 and response.json() == {"results": []}
    [request] = received
    assert request["path"].startswith("/wiki/rest/api/space?")
    assert "jwt=" not in request["path"]
    scheme, token = request["authorization"].split(" ")
    assert scheme == "JWT"
    claims = pyjwt.decode(token, tenant.shared_secret, algorithms=["HS256"])
    assert claims["iss"] == APP_KEY
    # atlassian-jwt, an independent implementation, agrees on the qsh of what was actually sent
    assert claims["qsh"] == hash_url("GET", request["path"].removeprefix("/wiki"))


def test_call_gives_up_after_the_timeout(product):
    base_url, _received = product
    tenant = RegistrationFactory.build(base_url=base_url)
    with pytest.raises(requests.Timeout):
        product_api.call(tenant, "GET", "/rest/api/slow", timeout=0.2)
