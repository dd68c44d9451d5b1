"""Helpers for the real-browser tests: launching Debian's chromium, logging staff in, axe-core.

Playwright drives the chromium the machine already has (``apt-get install chromium``); the tests never
download a browser. Every launch gets a fresh profile (Playwright makes a temporary user-data dir per
launch and deletes it at close), and the flags keep chromium off the network: no background updates,
sync, component downloads or QUIC probes on a machine whose only reachable host is loopback.
"""

import base64
import json
import os
import re
from pathlib import Path

from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def staff_login(page, live_url, user, password):
    """Log ``user`` in to the admin in ``page``'s browser context, as a person would, and land on the index.

    Two factors, as production requires: the password, then an authenticator code. A user with no
    authenticator yet enrols on the way, as a new staff member does: the test reads the key off the
    enrolment page (what a person types into their app), computes the app's code from it, and passes the
    backup-code page. A user with one gets the code of their device. The one place tests log staff in.
    """
    page.goto(f"{live_url}/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/admin/2fa/(enrol|verify)/.*"))
    if "/2fa/enrol/" in page.url:
        key = page.locator("code.security-secret").inner_text()
        page.locator("input[name=otp_token]").fill(_authenticator_code(key))
        page.get_by_role("button", name="Confirm").click()
        expect(page.locator("ul.security-backup-codes li")).to_have_count(10)
        page.get_by_role("link", name="Continue to the admin").click()
    else:
        from security.testing import authenticator_for, current_code

        page.locator("input[name=otp_token]").fill(current_code(authenticator_for(user)))
        page.get_by_role("button", name="Verify").click()
    page.wait_for_url(f"{live_url}/admin/")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()  # signed in, not the form again


def _authenticator_code(base32_key):
    """What an authenticator app shows now for the key as the enrolment page prints it (base32, grouped)."""
    from django_otp.oath import totp

    key = base64.b32decode(base32_key.replace(" ", "").upper())
    return str(totp(key, step=30, digits=6)).zfill(6)


# Impacts that fail the check; "minor" and "moderate" findings are printed by the report but do not fail.
BLOCKING_IMPACTS = ("serious", "critical")


def run_axe(page):
    """Run axe-core on the page as it is now; returns axe's result (violations, passes, ...).

    Injected as a script element, so the browser context must bypass the site's CSP (``bypass_csp=True``):
    the portal allows no script it does not serve itself.
    """
    page.wait_for_load_state("load")
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_JS))
    return page.evaluate(
        """() => axe.run(document, {
            resultTypes: ['violations'],
            runOnly: {type: 'tag', values: [
                'wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice',
            ]},
        })"""
    )


def blocking_violations(result):
    """The violations of impact serious or critical."""
    return [v for v in result["violations"] if v.get("impact") in BLOCKING_IMPACTS]


def describe_violations(where, violations):
    """A readable report: each rule, its impact, the help link and the offending elements with axe's
    summary of what to fix."""
    lines = [f"{where}: {len(violations)} accessibility violation(s)"]
    for violation in violations:
        lines.append(
            f"- [{violation['impact']}] {violation['id']}: {violation['help']} ({violation['helpUrl']})"
        )
        for node in violation["nodes"][:10]:
            target = json.dumps(node.get("target"))
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"    {target}: {node.get('html', '')[:160]}")
            if summary:
                lines.append(f"      {summary}")
    return "\n".join(lines)
