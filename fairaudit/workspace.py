"""The workspace folder that caches demo models, predictions and results.

Defaults to ``./.fairaudit`` and can be moved with the ``FAIRAUDIT_HOME``
environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    path = Path(os.environ.get("FAIRAUDIT_HOME", ".fairaudit")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def subdir(name: str) -> Path:
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
