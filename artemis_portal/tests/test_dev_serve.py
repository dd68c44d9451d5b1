"""``python3 dev.py serve --port N --host H``: links follow the port, and the console shows no token or link.

The server test starts Django's development server as a subprocess (the environment ``dev.py serve`` gives
it) on a free loopback port with its own SQLite file, goes through a request as a person would (form,
emailed confirmation link, status page), then reads everything the server printed.
"""

import http.cookiejar
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import dev
from conftest import free_port

ROOT = Path(dev.__file__).resolve().parent


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ("127.0.0.1", 8000)),
        (["--port", "8123"], ("127.0.0.1", 8123)),
        (["--port=9000", "--host", "0.0.0.0"], ("0.0.0.0", 9000)),  # noqa: S104
        (["--host=localhost"], ("localhost", 8000)),
    ],
)
def test_serve_takes_a_port_and_a_host(args, expected):
    assert dev.parse_serve_args(args) == expected


@pytest.mark.parametrize("args", [["--port", "http"], ["--port", "70000"], ["--verbose"], ["--port"]])
def test_serve_refuses_a_bad_option_with_a_reason(args):
    with pytest.raises(SystemExit) as stopped:
        dev.parse_serve_args(args)
    assert stopped.value.code  # a message, not a traceback


def test_app_base_url_follows_the_port_and_a_wildcard_bind_is_linked_as_loopback():
    assert dev.base_url("127.0.0.1", 8123) == "http://127.0.0.1:8123"
    assert dev.base_url("0.0.0.0", 9000) == "http://127.0.0.1:9000"  # noqa: S104
    assert dev.base_url("localhost", 8000) == "http://localhost:8000"
    assert dev.base_url("::1", 8000) == "http://[::1]:8000"


def _fetch(opener, url, data=None):
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with opener.open(urllib.request.Request(url, data=body), timeout=20) as response:
            return response.status, response.geturl(), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, url, error.read().decode()


def _csrf(page):
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def test_the_development_server_opens_every_emailed_link_and_prints_no_token_or_link(tmp_path, monkeypatch):
    port = free_port()
    monkeypatch.setattr(dev, "ROOT", tmp_path)  # var/mail/ under the test's folder
    monkeypatch.setattr(dev, "ENV_FILE", tmp_path / ".env")
    environment = dev.serve_environment("127.0.0.1", port)
    environment.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}",
        DEBUG="1",
        SECRET_KEY="dev-serve-test-" + "k" * 40,
        FERNET_KEYS=dev.new_key(),
        BACKUP_KEYS=dev.new_key(),
        TASKS_BACKEND="immediate",
    )
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    assert environment["APP_BASE_URL"] == f"http://127.0.0.1:{port}"
    assert environment["EMAIL_URL"].startswith("filemail://")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=environment,
        check=True,
    )
    log = open(tmp_path / "server.log", "w+")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = environment["APP_BASE_URL"]
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _url, form = _fetch(opener, f"{base}/requests/new/")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.3)
        assert status == 200
        status, _url, _page = _fetch(
            opener,
            f"{base}/requests/new/",
            {
                "csrfmiddlewaretoken": _csrf(form),
                "request_type": "copy",
                "name": "Ada Lovelace",
                "email": "ada@example.org",
                "country": "GB",
                "concerns": "account",
            },
        )
        assert status == 200
        mail = "".join(path.read_text() for path in sorted((tmp_path / "var" / "mail").glob("*.log")))
        confirm_link = re.search(r"(http://\S+/requests/confirm/\?token=\S+)", mail).group(1)
        assert confirm_link.startswith(f"{base}/requests/confirm/")  # the link follows the port
        status, _url, page = _fetch(opener, confirm_link)
        assert status == 200 and "Confirm your email address" in page
        status, status_url, page = _fetch(opener, confirm_link, {"csrfmiddlewaretoken": _csrf(page)})
        assert status == 200 and "/requests/status/" in status_url and "Your request DSR-" in page
        token = status_url.rstrip("/").rsplit("/", 1)[-1]
        confirm_token = urllib.parse.parse_qs(urllib.parse.urlsplit(confirm_link).query)["token"][0]
    finally:
        server.terminate()
        server.wait(timeout=20)
    log.seek(0)
    printed = log.read()
    log.close()
    assert "/requests/status/" in printed  # the request log is there...
    assert token not in printed and confirm_token not in printed  # ...without the secrets
    assert "ada@example.org" not in printed and "Ada Lovelace" not in printed
