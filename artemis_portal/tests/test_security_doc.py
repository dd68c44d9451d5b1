"""SECURITY.md names the test behind each promise and each attack: every test it names must exist (on
the SQLite pass too: a test is found by its definition, not run), so the tables cannot go stale."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "SECURITY.md"
REFERENCE = re.compile(r"`(?P<file>[\w/]+/test_\w+\.py)::(?P<test>test_\w+)(?:\[[^\]]*\])?`")


def test_every_test_named_in_security_md_exists():
    text = DOC.read_text(encoding="utf-8")
    references = list(REFERENCE.finditer(text))
    assert len(references) > 50
    missing = []
    for match in references:
        path = ROOT / match["file"]
        if not path.exists() or not re.search(rf"^(?:    )?def {match['test']}\(", path.read_text(), re.M):
            missing.append(f"{match['file']}::{match['test']}")
    assert not missing, missing


def test_every_attack_of_the_second_review_has_a_row():
    section = (
        DOC.read_text(encoding="utf-8").split("## Attacks tried, and what stops them")[1].split("\n## ")[0]
    )
    numbers = {row.split("|")[1].strip() for row in section.splitlines() if row.startswith("| ")}
    assert {"1", "2", "3", "4", "5", "6", "7", "8"} <= numbers
