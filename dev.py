#!/usr/bin/env python3
"""One-command set-up for the Artemis privacy portal (standard library only, so it runs before the venv).

    python3 dev.py serve [--port N] [--host H]
                             set up, migrate SQLite, ensure a local admin, serve on http://127.0.0.1:8000
                             (or the host and port given; APP_BASE_URL follows them, so email links open)
    python3 dev.py screenshots
                             retake the staff guide's screenshots (docs/staff-guide/*.png) in chromium
    python3 dev.py test      set up (with the npm packages of the browser tests), lint, and run the whole
                             test suite (arguments go to pytest)

Both are idempotent: the virtual environment, installed requirements, .env and database are reused.
"""

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import venv
from base64 import urlsafe_b64encode
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("VENV_DIR", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
ENV_FILE = ROOT / ".env"


def say(message):
    """Print a progress line that stands out from pip and Django output."""
    print(f"==> {message}", flush=True)


def run(*args, **kwargs):
    """Run a command from the project folder and stop with its exit code if it fails."""
    result = subprocess.run([str(a) for a in args], cwd=ROOT, **kwargs)
    if result.returncode:
        sys.exit(result.returncode)


def ensure_venv(requirements):
    """Create .venv and install the pinned requirements, unless the same file set is installed already."""
    if sys.version_info < (3, 11):
        sys.exit(f"Python 3.11 or newer is needed (found {sys.version.split()[0]}).")
    if not PYTHON.exists():
        say(f"creating virtual environment in {VENV}")
        venv.create(VENV, with_pip=True)
    digest = hashlib.sha256()
    for name in ("requirements.txt", requirements):
        digest.update((ROOT / name).read_bytes())
    stamp = VENV / f".installed-{requirements}"
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        say(f"requirements from {requirements} already installed")
        return
    say(f"installing {requirements}")
    run(PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", ROOT / requirements)
    stamp.write_text(digest.hexdigest())


def ensure_npm_packages():
    """Install the locked test-only npm packages (axe-core, for the browser tests) when missing or stale.

    ``npm ci`` installs exactly package-lock.json. Without npm the browser accessibility test cannot run:
    it fails under CI and is skipped, with the reason, elsewhere.
    """
    lock = ROOT / "package-lock.json"
    if not lock.exists():
        return
    wanted = json.loads(lock.read_text())["packages"]["node_modules/axe-core"]["version"]
    installed = ROOT / "node_modules" / "axe-core" / "package.json"
    if installed.exists() and json.loads(installed.read_text()).get("version") == wanted:
        say(f"npm packages already installed (axe-core {wanted})")
        return
    if not shutil.which("npm"):
        say("npm not found: the accessibility tests need axe-core (install Node.js and npm)")
        return
    say("installing npm packages (npm ci)")
    run("npm", "ci", "--no-audit", "--no-fund")


def new_key():
    """A fresh Fernet-format key (32 random bytes, url-safe base64)."""
    return urlsafe_b64encode(secrets.token_bytes(32)).decode()


def ensure_env_file():
    """Write a local .env with fresh keys when there is none; never overwrite an existing one."""
    if ENV_FILE.exists():
        say(".env exists; keeping it")
        return
    say("writing .env with freshly generated keys")
    ENV_FILE.write_text(
        "# Local development settings, written by dev.py. Not committed (see .gitignore).\n"
        "DEBUG=1\n"
        f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
        f"FERNET_KEYS={new_key()}\n"
        f"BACKUP_KEYS={new_key()}\n"
        "APP_BASE_URL=http://127.0.0.1:8000\n"
    )
    ENV_FILE.chmod(0o600)


def parse_serve_args(args):
    """``--port N`` and ``--host H`` (either ``--port=N`` or ``--port N``); anything else stops with usage."""
    options = {"port": "8000", "host": "127.0.0.1"}
    args = list(args)
    while args:
        arg = args.pop(0)
        name, _sep, value = arg.partition("=")
        if name not in ("--port", "--host"):
            sys.exit(f"unknown option {arg!r}; use: python3 dev.py serve [--port N] [--host H]")
        if not value:
            if not args:
                sys.exit(f"{name} needs a value")
            value = args.pop(0)
        options[name[2:]] = value
    if not options["port"].isdigit() or not 0 < int(options["port"]) < 65536:
        sys.exit(f"--port must be a number from 1 to 65535, not {options['port']!r}")
    return options["host"], int(options["port"])


def base_url(host, port):
    """The address email links use: the host served (a wildcard bind is opened as 127.0.0.1)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 (a bind, not a link)
    if ":" in shown:  # an IPv6 literal
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def _env_file_sets(name):
    return ENV_FILE.exists() and any(
        line.strip().startswith(f"{name}=") for line in ENV_FILE.read_text().splitlines()
    )


def serve_environment(host, port):
    """The environment of the development server.

    APP_BASE_URL follows the port and host, so every link in every email opens on this server. Emails are
    written to files under var/mail/ (unless EMAIL_URL is set), not printed: the console shows no
    confirmation or status link, and the request log goes through the same redaction as every log.
    """
    environment = dict(os.environ)
    environment["APP_BASE_URL"] = base_url(host, port)
    if "EMAIL_URL" not in os.environ and not _env_file_sets("EMAIL_URL"):
        mail_dir = ROOT / "var" / "mail"
        mail_dir.mkdir(parents=True, exist_ok=True)
        environment["EMAIL_URL"] = f"filemail:///{mail_dir}"  # the path after the third slash, absolute
    return environment


def serve(args=()):
    """Set up and run the portal on SQLite at http://127.0.0.1:8000 (or ``--host``/``--port``)."""
    host, port = parse_serve_args(args)
    ensure_venv("requirements.txt")
    ensure_env_file()
    environment = serve_environment(host, port)
    say("migrating the database")
    run(PYTHON, "manage.py", "migrate", "--noinput", env=environment)
    run(PYTHON, "manage.py", "ensure_local_admin", env=environment)
    url = environment["APP_BASE_URL"]
    say(f"request form: {url}/requests/new/")
    say(f"admin:        {url}/admin/")
    if "EMAIL_URL" in environment and environment["EMAIL_URL"].startswith("filemail://"):
        say(f"emails:       written to {ROOT / 'var' / 'mail'} (open a .log file for its links)")
    os.chdir(ROOT)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    os.execve(str(PYTHON), [str(PYTHON), "manage.py", "runserver", bind], environment)


def screenshots():
    """Retake the staff guide's screenshots: the browser test that walks a day's work saves them."""
    ensure_venv("requirements-dev.txt")
    ensure_npm_packages()
    ensure_env_file()
    say("taking the staff guide's screenshots (docs/staff-guide/)")
    environment = {**os.environ, "STAFF_GUIDE_SCREENSHOTS": str(ROOT / "docs" / "staff-guide")}
    run(PYTHON, "-m", "pytest", "e2e/test_staff_guide.py", "-m", "browser", "-q", env=environment)


def test(pytest_args):
    """Set up, lint with ruff, check the import contracts and the types, and run the whole test suite."""
    ensure_venv("requirements-dev.txt")
    ensure_npm_packages()
    ensure_env_file()
    say("linting (ruff)")
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")
    say("checking the import layers and cycles (import-linter contracts in pyproject.toml)")
    run(BIN / "lint-imports", "--no-cache", "--no-logo")
    say("type-checking the public APIs (mypy with django-stubs, configured in pyproject.toml)")
    run(BIN / "mypy")
    say("checking forge/manifest.yml against the Connect descriptor")
    run(PYTHON, "manage.py", "forge_manifest", "--check", env=forge_manifest_env())
    say("running tests on " + ("DATABASE_URL" if os.environ.get("DATABASE_URL") else "SQLite"))
    run(PYTHON, "-m", "pytest", *pytest_args)


def forge_manifest_env():
    """The environment the committed forge/manifest.yml is generated with (no .env, the example's URL).

    Kept equal to COMMITTED_SETTINGS in registrations/forge_manifest.py (a test checks it).
    """
    return {
        **os.environ,
        "ENV_FILE": "",
        "DEBUG": "1",
        "APP_BASE_URL": "https://privacy.example.com",
        "FORGE_MANIFEST_APP_ID": "",
        "FORGE_APP_IDS": "",
    }


def main(argv):
    """Dispatch the sub-command."""
    command, rest = (argv[0], argv[1:]) if argv else ("serve", [])
    if command == "serve":
        serve(rest)
    elif command == "screenshots":
        screenshots()
    elif command == "test":
        test(rest)
    elif command == "setup":
        ensure_venv("requirements-dev.txt")
        ensure_npm_packages()
        ensure_env_file()
    else:
        sys.exit(
            f"unknown command {command!r}; use: python3 dev.py serve [--port N] [--host H] | "
            "test [pytest args] | screenshots | setup"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
