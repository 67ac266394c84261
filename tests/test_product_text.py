"""What the product says points only at things a user has: no references to files outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"spec §|\bglossary\b|\bseed[ -]00\d", re.IGNORECASE)


def test_no_text_in_the_product_points_outside_the_repository():
    files = [ROOT / "README.md", ROOT / "app.py", *ROOT.glob("fairaudit/**/*.py"), *ROOT.glob("app_pages/*.py"),
             *ROOT.glob("appkit/*.py")]
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in files
             for n, line in enumerate(path.read_text().splitlines(), 1) if OUTSIDE.search(line)]
    assert not found, "\n".join(found)
