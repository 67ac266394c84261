"""``identity-folders``: face photos stored one folder per person, as LFW, VGGFace2 and CASIA-WebFace are.

Layout::

    root/
      <identity>/<image>.jpg      # any number of photos per person (.jpg, .jpeg, .png, .bmp, .webp)
      identities.csv              # one row per person: the column 'identity' (the folder name) and attributes

The attributes table is ``root/identities.csv`` unless the option ``attributes`` names another CSV file. Its
``identity`` column names the folders; every other column is an attribute of the person (any values, coded in
sorted order), to audit recognition by. Every folder needs a row and every row a folder, so a typo cannot
quietly drop a group. The target is ``identity``; the default sensitive attribute is the table's first
attribute column. Images are decoded lazily and resized to ``image_size`` (shorter side, then centre crop).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fairaudit.data.loaders.common import ImageFileDataset, code_values, read_csv, require_columns
from fairaudit.data.registry import DatasetSpec, register_dataset
from fairaudit.errors import DatasetError
from fairaudit.options import setting

NAME = "identity-folders"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_TABLE = "identities.csv"


class IdentityFolders(ImageFileDataset):
    """Photos of people, one folder per person; ``ds.identities`` gives each sample's person code."""

    @property
    def identities(self) -> np.ndarray:
        return self._codes[:, self._col["identity"]]

    def identity_attributes(self) -> pd.DataFrame:
        return self.people.copy()


def _few(names, n: int = 3) -> str:
    names = sorted(map(str, names))
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(repr(x) for x in names[:n]) + more


def build_identity_folders(split: str = "test", data_dir: str | Path | None = None, attributes: str = "",
                           image_size: int = 64) -> IdentityFolders:
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"'{root}' is not a folder; {NAME} reads root/<identity>/<image> folders.")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    photos = {p.name: sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
              for p in folders}
    photos = {name: files for name, files in photos.items() if files}
    if not photos:
        raise DatasetError(f"no identity folder with images ({', '.join(IMAGE_SUFFIXES)}) was found in '{root}'; "
                           f"{NAME} expects root/<identity>/<image>.")
    table_path = Path(attributes).expanduser() if attributes else root / DEFAULT_TABLE
    if not table_path.is_file():
        raise DatasetError(f"expected the attributes table of the identities at '{table_path}' (a CSV with an "
                           "'identity' column), but it does not exist.")
    table = read_csv(table_path, dtype=str, keep_default_na=False)
    require_columns(table, ["identity"], str(table_path))
    columns = [c for c in table.columns if c != "identity"]
    if not columns:
        raise DatasetError(f"'{table_path}' has no attribute column besides 'identity'.")
    table["identity"] = table["identity"].str.strip()
    duplicated = table["identity"][table["identity"].duplicated()]
    if len(duplicated):
        raise DatasetError(f"'{table_path}' lists the identity {duplicated.iloc[0]!r} twice.")
    unknown = set(table["identity"]) - set(photos)
    if unknown:
        raise DatasetError(f"'{table_path}' names {len(unknown)} identit{'y' if len(unknown) == 1 else 'ies'} with "
                           f"no image folder in '{root}': {_few(unknown)}.")
    missing = set(photos) - set(table["identity"])
    if missing:
        raise DatasetError(f"{len(missing)} identity folder(s) of '{root}' have no row in '{table_path}': "
                           f"{_few(missing)}.")
    table = table.set_index("identity").loc[sorted(photos)].reset_index()
    people, names = pd.DataFrame(index=range(len(table))), {"identity": list(table["identity"])}
    for column in columns:
        people[column], names[column] = code_values(table[column].str.strip(), column=f"column '{column}'")
    identity = np.concatenate([np.full(len(photos[name]), k) for k, name in enumerate(table["identity"])])
    paths = [f for name in table["identity"] for f in photos[name]]
    frame = people.iloc[identity].reset_index(drop=True)
    frame.insert(0, "identity", identity)
    ds = IdentityFolders(NAME, split, paths, frame, names, image_size, "identity", [columns[0]])
    ds.people = people
    return ds


register_dataset(DatasetSpec(
    name=NAME,
    builder=build_identity_folders,
    kind="image",
    description="Face photos in root/<identity>/<image> folders (LFW, VGGFace2, CASIA layout) with an "
                "identities.csv of per-person attributes, for face-recognition audits.",
    default_target="identity",
    default_sensitive=[],
    embedded=False,
    options={"attributes": setting("", "the attributes CSV keyed by identity (empty: <root>/identities.csv)"),
             "image_size": setting(64, "side of the square images the model reads", min=8, unit="pixels")},
    splits=("test",),
))
