"""docs/compliance.md is the map from each legal rule to the test that proves it: every test it names
must exist, and every section must have at least one rule, so the table cannot silently go stale."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "compliance.md"
# `path/test_file.py::test_name` or `test_file.py::test_name`, and `::test_name` continuing the last file.
REFERENCE = re.compile(r"`(?:(?P<file>[\w/]*test_\w+\.py))?::(?P<test>test_\w+)`")


def _test_files():
    return {path.name: path for path in ROOT.glob("*/tests/test_*.py")} | {
        str(path.relative_to(ROOT)): path for path in ROOT.glob("*/tests/test_*.py")
    }


def test_every_test_named_in_the_compliance_table_exists():
    files = _test_files()
    missing = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        current = None
        for match in REFERENCE.finditer(line):
            current = match["file"] or current
            assert current, f"a ::test reference with no file before it: {line[:120]}"
            path = files.get(current)
            if path is None or not re.search(rf"^def {match['test']}\(", path.read_text(), re.M):
                missing.append(f"{current}::{match['test']}")
    assert not missing, missing


def test_every_section_of_the_compliance_table_lists_at_least_one_rule():
    sections = re.split(r"^## ", DOC.read_text(encoding="utf-8"), flags=re.M)[1:]
    assert len(sections) >= 9
    for section in sections:
        rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
        assert len(rows) >= 2, f"section '{section.splitlines()[0]}' has no rule rows"
