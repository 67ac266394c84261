"""Any image collection described by a CSV manifest.

``data_dir/manifest.csv`` (option ``manifest``) has one row per image: a
path column (option ``path_column``, default ``path``; relative to the CSV's
folder or absolute) and any number of label / attribute columns. Each such
column is integer-coded in the sorted order of its values, with those values
as names (``value_names``); a column with missing values, or with more than
``MAX_CLASSES`` distinct values (e.g. a continuous score), cannot be used and
is listed in ``dataset.skipped_columns`` with the reason (for a missing value,
the first line of the file that lacks it); choosing it as the target or a
sensitive attribute, explicitly or as the default, raises that reason.

Image paths may be absolute or contain ``../``, so a manifest can point
anywhere the process can read. With the option ``contained=true`` every path
must resolve (symlinks followed) inside the manifest's folder, and a path
that leaves it is refused; the app stages uploaded manifests this way, with
the image folder the user names as the root.

Splits come from ``split_column`` if given (values ``train``, ``val`` /
``valid`` / ``validation``, ``test``), else from a seeded 80/20 train/test
split. Pick the target and sensitive attributes with ``--target`` /
``--sensitive``; by default a column named ``label``, ``target``, ``y`` or
``class`` is the target (else the first column) and the next one the
sensitive attribute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from fairaudit.data.loaders.common import (ImageFileDataset, code_values, read_csv, require_columns, require_path,
                                           seeded_split)
from fairaudit.data.registry import DatasetSpec, register_dataset
from fairaudit.errors import DatasetError
from fairaudit.options import setting

MAX_CLASSES = 100
TARGET_NAMES = ("label", "target", "y", "class")
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
TEST_FRACTION = 0.2


class ManifestDataset(ImageFileDataset):
    """Images listed in a CSV; selecting an unusable column explains why it was skipped."""

    def __init__(self, split: str, paths: Sequence[Path], attributes: pd.DataFrame,
                 value_names: dict[str, list[str]], image_size: int, default_target: str,
                 default_sensitive: Sequence[str], skipped_columns: dict[str, str]):
        self.skipped_columns = dict(skipped_columns)
        # Initialised on usable columns; an unusable default is refused when it is actually selected.
        usable = list(attributes.columns)
        target = default_target if default_target in usable else usable[0]
        sensitive = [s for s in default_sensitive if s in usable and s != target] or [
            next(c for c in usable if c != target)]
        super().__init__("manifest", split, paths, attributes, value_names, image_size, target, sensitive)
        self.default_target, self.default_sensitive = default_target, list(default_sensitive)

    def select(self, target=None, sensitive=None):
        target = target or self.default_target
        sensitive = self.default_sensitive if sensitive is None else sensitive
        requested = [target, *(sensitive.split(",") if isinstance(sensitive, str) else sensitive)]
        for name in requested:
            if name in self.skipped_columns:
                raise DatasetError(f"manifest column '{name}' cannot be used: {self.skipped_columns[name]}.")
        return super().select(target, sensitive)


def code_columns(frame: pd.DataFrame, manifest: str = "the manifest"
                 ) -> tuple[pd.DataFrame, dict[str, list[str]], dict[str, str]]:
    """Integer codes of the usable columns, their value names, and why the others were skipped."""
    codes, names, skipped = {}, {}, {}
    for column in frame.columns:
        values = frame[column]
        if values.isna().any():
            missing = values.isna().to_numpy()
            skipped[column] = (f"it has no value on line {int(np.flatnonzero(missing)[0]) + 2} of '{manifest}' "
                               f"({int(missing.sum())} row(s) in all); fill the value in or drop the row")
        elif values.nunique() > MAX_CLASSES:
            skipped[column] = f"it has {values.nunique()} distinct values (at most {MAX_CLASSES} allowed)"
        else:
            codes[column], names[column] = code_values(values, None, f"manifest column '{column}'")
    return pd.DataFrame(codes, index=frame.index), names, skipped


def default_roles(columns: Sequence[str], skipped: dict[str, str], manifest: str) -> tuple[str, list[str]]:
    """The default target (a column named like a label, else the first) and sensitive attribute (the next)."""
    if len(columns) < 2:
        raise DatasetError(f"'{manifest}' needs at least two label/attribute columns besides the paths "
                           f"(a target and a sensitive attribute); found {len(columns)}.")
    target = next((c for c in columns if str(c).lower() in TARGET_NAMES), columns[0])
    sensitive = next(c for c in columns if c != target)
    unusable = [c for c in (target, sensitive) if c in skipped]
    if unusable and len(columns) - len(skipped) < 2:
        raise DatasetError(f"manifest column '{unusable[0]}' cannot be used: {skipped[unusable[0]]}.")
    return target, [sensitive]


def contained_paths(values: pd.Series, root: Path, source: str, what: str = "the manifest's folder") -> list[Path]:
    """Resolve the paths of ``values`` (relative ones against ``root``) and refuse any that leaves ``root``.

    Symlinks are followed, so a link inside ``root`` that points outside it is
    refused too. ``values`` keeps the table's row index (for the line number in
    the error). Returns the resolved absolute paths.
    """
    root = Path(root).expanduser().resolve()
    resolved = []
    for row, text in values.astype(str).items():
        path = (root / Path(text).expanduser()).resolve()
        if not path.is_relative_to(root):
            raise DatasetError(f"image path '{text}' on line {int(row) + 2} of '{source}' lies outside {what} "
                               f"'{root}', and only images inside it may be read; move the image there or fix "
                               "the path.")
        resolved.append(path)
    return resolved


def resolve_paths(values: pd.Series, folder: Path, manifest: str) -> list[Path]:
    paths = [p if p.is_absolute() else folder / p for p in map(Path, values.astype(str))]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} of {len(paths)} image(s) listed in '{manifest}' are missing, "
                           f"the first being '{missing[0]}'.")
    return paths


def split_rows(frame: pd.DataFrame, split: str, split_column: str, seed: int, manifest: str) -> np.ndarray:
    if not split_column:
        train_idx, test_idx = seeded_split(len(frame), TEST_FRACTION, seed)
        if split == "val":
            raise DatasetError(f"'{manifest}' has no split column, so it has no 'val' split; "
                               "set the option split_column or use train/test.")
        return train_idx if split == "train" else test_idx
    labels = frame[split_column].astype(str).str.strip().str.lower()
    unknown = sorted(set(labels) - set(SPLIT_VALUES))
    if unknown:
        raise DatasetError(f"split column '{split_column}' of '{manifest}' has the unknown value "
                           f"{unknown[0]!r}; use train, val or test.")
    rows = np.flatnonzero(labels.map(SPLIT_VALUES).to_numpy() == split)
    if not len(rows):
        raise DatasetError(f"no row of '{manifest}' belongs to the '{split}' split.")
    return rows


def build_manifest(split: str = "test", data_dir: str | Path | None = None, manifest: str = "manifest.csv",
                   path_column: str = "path", split_column: str = "", image_size: int = 64,
                   seed: int = 0, contained: bool = False) -> ManifestDataset:
    csv_path = require_path(Path(data_dir) / manifest, "the manifest CSV")
    frame = read_csv(csv_path)
    require_columns(frame, [path_column] + ([split_column] if split_column else []), csv_path.name)
    if frame.empty:
        raise DatasetError(f"'{csv_path.name}' has a header but no rows; list one image per row.")
    attribute_columns = [c for c in frame.columns if c not in (path_column, split_column)]
    # Coded on the whole file so that every split uses the same codes.
    codes, names, skipped = code_columns(frame[attribute_columns], csv_path.name)
    target, sensitive = default_roles(attribute_columns, skipped, csv_path.name)
    rows = split_rows(frame, split, split_column, seed, csv_path.name)
    listed = frame[path_column]
    if contained:  # every row, whatever its split: the file as a whole stays inside its folder
        listed = pd.Series([str(p) for p in contained_paths(listed, csv_path.parent, csv_path.name)], frame.index)
    paths = resolve_paths(listed.iloc[rows], csv_path.parent, csv_path.name)
    return ManifestDataset(split, paths, codes.iloc[rows], names, image_size, target, sensitive, skipped)


register_dataset(DatasetSpec(
    name="manifest",
    builder=build_manifest,
    kind="image",
    description="Images listed in a CSV (path column + label/attribute columns), any folder layout.",
    default_target="label",
    default_sensitive=["group"],
    embedded=False,
    options={"manifest": setting("manifest.csv", "the CSV listing the images, relative to the root folder"),
             "path_column": setting("path", "the column holding each image's path"),
             "split_column": setting("", "the column naming each row's split (empty: a seeded random division)"),
             "image_size": setting(64, "side of the square images the model reads", min=8, unit="pixels"),
             "seed": setting(0, "seed of the random train/val/test division", min=0),
             "contained": setting(False, "refuse image paths that leave the root folder")},
    splits=("train", "val", "test"),
))
