"""Real-browser tests: Playwright's sync API driving Debian's chromium against Django's live server.

- ``browser.py``: launch flags, ``staff_login`` (the only place staff sign in), the axe-core helpers.
- ``conftest.py``: the ``browser`` (one launch per module), ``new_context`` (one per person) and ``site``
  (live server, emails to the real SMTP sink, jobs inline) fixtures; prerequisites checked with a reason.
- ``test_journey.py``: a copy request from the form to the downloaded ZIP, requester and staff.
- ``test_accessibility.py``: axe-core on every public page and the admin login.
- ``test_keyboard.py``: the request form by keyboard alone; the error summary's focus and links.

Every test is marked ``browser``: ``python3 dev.py test -m browser`` runs only these.
"""
