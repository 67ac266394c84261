"""Uploaded files that the loaders read from disk: staged in the workspace."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fairaudit import workspace
from fairaudit.data.loaders.manifest import contained_paths
from fairaudit.errors import DatasetError
from appkit.runner import read_table

MANIFEST_NAME = "manifest.csv"


def stage_manifest(data: bytes, filename: str, image_folder: str | None, path_column: str = "path") -> Path:
    """Write an uploaded manifest CSV where the ``manifest`` loader can read it; return its folder.

    An uploaded manifest is contained: ``image_folder`` is its root, relative
    image paths are resolved against it, and every path, relative or
    absolute, must resolve (symlinks followed) inside it, so an upload cannot
    make the app read images from anywhere else. The staged copy lists the
    resolved absolute paths and lives in ``$FAIRAUDIT_HOME/uploads/`` under the
    digest of its content and folder, so the same upload is staged once.
    """
    frame = read_table(data, filename)
    if path_column not in frame.columns:
        raise DatasetError(f"'{filename}' has no path column '{path_column}'; columns: "
                           f"{', '.join(map(str, frame.columns))}.")
    if not image_folder:
        raise DatasetError(f"enter the folder that holds the images of '{filename}'; only images inside it are "
                           "read.")
    root = Path(image_folder).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image folder '{image_folder}' does not exist.")
    frame[path_column] = [str(p) for p in contained_paths(frame[path_column], root, filename, "the image folder")]
    digest = hashlib.sha256(data + str(image_folder or "").encode()).hexdigest()[:12]
    folder = workspace.subdir("uploads") / f"manifest-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / MANIFEST_NAME
    if not target.exists():
        tmp = target.with_suffix(".tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(target)
    return folder
