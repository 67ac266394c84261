"""The workspace folder that caches demo models, predictions and results.

Defaults to ``./.fairaudit`` and can be moved with the ``FAIRAUDIT_HOME``
environment variable. A ``FAIRAUDIT_HOME`` that names a file, or a folder that
cannot be created, raises :class:`WorkspaceError` with one sentence saying what
to change.
"""

from __future__ import annotations

import os
from pathlib import Path

from fairaudit.errors import FairauditError

HOME_ENV = "FAIRAUDIT_HOME"


class WorkspaceError(FairauditError):
    """The workspace folder (``FAIRAUDIT_HOME``) or one of its subfolders cannot be used."""


def ensure_folder(path: Path, what: str) -> Path:
    """Create folder ``path`` if needed; a file in the way or a folder that cannot be made is a
    :class:`WorkspaceError` naming ``what`` the folder is for."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            return path
        error = None
    except OSError as exc:
        error = exc
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker == path:
        raise WorkspaceError(f"{what} '{path}' is a file, not a folder; point {HOME_ENV} at a folder, or move that "
                             "file aside.")
    if blocker is not None:
        raise WorkspaceError(f"{what} '{path}' cannot be created because '{blocker}' is a file; point {HOME_ENV} "
                             "at a folder, or move that file aside.")
    reason = getattr(error, "strerror", None) or error or "it is not a folder"
    raise WorkspaceError(f"{what} '{path}' cannot be created ({reason}); set {HOME_ENV} to a folder you can write "
                         "to.")


def home() -> Path:
    """The workspace folder, created if needed."""
    path = Path(os.environ.get(HOME_ENV, ".fairaudit")).expanduser()
    return ensure_folder(path, f"the workspace ({HOME_ENV})" if HOME_ENV in os.environ else "the workspace")


def subdir(name: str) -> Path:
    """A folder of the workspace (``models``, ``runs``, ``logs``...), created if needed."""
    return ensure_folder(home() / name, "the workspace folder")
