"""Uploaded files that the loaders read from disk: staged in the workspace."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fairaudit import workspace
from fairaudit.errors import DatasetError
from fairaudit.ui.runner import read_table

MANIFEST_NAME = "manifest.csv"


def stage_manifest(data: bytes, filename: str, image_folder: str | None, path_column: str = "path") -> Path:
    """Write an uploaded manifest CSV where the ``manifest`` loader can read it; return its folder.

    The upload has no folder of its own, so relative image paths are made
    absolute against ``image_folder`` (absolute paths are kept). The staged
    copy lives in ``$FAIRAUDIT_HOME/uploads/`` under the digest of its
    content and folder, so the same upload is staged once.
    """
    frame = read_table(data, filename)
    if path_column not in frame.columns:
        raise DatasetError(f"'{filename}' has no path column '{path_column}'; columns: "
                           f"{', '.join(map(str, frame.columns))}.")
    paths = frame[path_column].astype(str)
    relative = ~paths.map(lambda p: Path(p).expanduser().is_absolute())
    if relative.any():
        if not image_folder:
            raise DatasetError(f"'{filename}' lists relative image paths (e.g. '{paths[relative].iloc[0]}'); "
                               "enter the folder they are relative to.")
        root = Path(image_folder).expanduser()
        if not root.is_dir():
            raise DatasetError(f"image folder '{image_folder}' does not exist.")
        frame.loc[relative, path_column] = [str(root.resolve() / p) for p in paths[relative]]
    digest = hashlib.sha256(data + str(image_folder or "").encode()).hexdigest()[:12]
    folder = workspace.subdir("uploads") / f"manifest-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / MANIFEST_NAME
    if not target.exists():
        tmp = target.with_suffix(".tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(target)
    return folder
