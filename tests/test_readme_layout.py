"""README's "Project layout" names every folder and module of the tree, so a newcomer finds each one there."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _layout() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("## Project layout", 1)[1].split("\n## ", 1)[0]


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:  # not a git checkout (an sdist): read the folders instead
        return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")]
    return out.stdout.split()


def test_the_layout_names_every_folder_and_module():
    layout = _layout()
    tracked = _tracked()
    wanted = set()
    for path in tracked:
        parts = Path(path).parts
        if len(parts) > 1 and not parts[0].startswith(".") and parts[0] not in ("fairaudit",):
            wanted.add(f"`{parts[0]}/")
        if parts[0] == "fairaudit" and len(parts) == 2 and path.endswith(".py") and parts[1] != "__init__.py":
            wanted.add(f"`{parts[1]}`")
        if parts[0] == "fairaudit" and len(parts) > 2:
            wanted.add(f"`{parts[1]}/")
        if parts[0] in ("app_pages", "appkit") and path.endswith(".py") and parts[-1] != "__init__.py":
            wanted.add(f"`{parts[-1]}`")
    missing = sorted(name for name in wanted if name not in layout)
    assert not missing, f"README's Project layout does not name: {', '.join(missing)}"
