"""docs/staff-guide.md shows every screenshot the browser walk takes, and each is a 1280×800 PNG."""

import re
import struct
from pathlib import Path

from e2e.test_staff_guide import SHOTS

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "staff-guide.md"


def test_the_staff_guide_shows_each_screenshot_of_the_walk_and_each_is_there_at_1280_by_800():
    shown = re.findall(r"\]\((staff-guide/[\w-]+\.png)\)", GUIDE.read_text())
    assert shown == [f"staff-guide/{name}.png" for name in SHOTS]
    for path in shown:
        data = (ROOT / "docs" / path).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", path
        assert struct.unpack(">II", data[16:24]) == (1280, 800), path
        assert len(data) < 400_000, path  # small enough to keep in the repository
