"""The import rules of docs/architecture.md, over every module of the project, tests included.

The import-linter contracts in pyproject.toml (run by ``python3 dev.py test``) keep the apps in one-way
layers and the packages inside each app acyclic; this test adds the last case they leave open: a cycle
of single modules that runs through tests of different apps. grimp reads every import statement,
imports inside functions included, so a cycle cannot hide in a function body.
"""

import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("artemis_portal", "security", "registrations", "dsr_requests", "e2e")


@pytest.fixture(scope="module")
def graph():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def _direct_imports(graph):
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            yield importer, imported


def test_no_module_imports_itself_back_through_a_chain_of_imports(graph):
    cycles = [
        f"{importer} -> {imported} -> ... -> {importer}"
        for importer, imported in _direct_imports(graph)
        if graph.chain_exists(importer=imported, imported=importer)
    ]
    assert cycles == []


MAX_LINES = 800


def test_no_module_outside_tests_and_migrations_is_longer_than_800_lines():
    """A module that grows past 800 lines is split by concern (docs/architecture.md), as services/ was."""
    sources = [
        path
        for folder in (*PACKAGES[:-1], "bench")
        for path in (ROOT / folder).rglob("*.py")
        if not {"tests", "migrations"} & set(path.relative_to(ROOT).parts)
    ]
    assert len(sources) > 50  # the walk found the project
    too_long = {
        str(path.relative_to(ROOT)): lines
        for path in sources
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert too_long == {}
