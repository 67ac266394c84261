"""UTKFace: faces whose labels are encoded in the file name.

Every ``*.jpg`` under ``data_dir`` (sub-folders included) named
``[age]_[gender]_[race]_[date&time].jpg`` (or ``.jpg.chip.jpg`` for the
aligned crops) is one sample: gender 0 male, 1 female; race 0 White,
1 Black, 2 Asian, 3 Indian, 4 Others. Files whose name does not follow this
pattern (a few in the public release) are skipped; their number is kept in
``dataset.skipped``. There is no official split: a seeded 80/20 split is
used. Default target ``gender``, sensitive ``race``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from fairaudit.data.loaders.common import ImageFileDataset, seeded_split
from fairaudit.data.registry import DatasetSpec, register_dataset
from fairaudit.errors import DatasetError
from fairaudit.options import setting

NAME_PATTERN = re.compile(r"^(\d{1,3})_([01])_([0-4])_[^_]+?\.jpg(?:\.chip\.jpg)?$", re.IGNORECASE)
GENDERS = ["Male", "Female"]
RACES = ["White", "Black", "Asian", "Indian", "Others"]
AGE_EDGES = [20, 40, 60]
AGE_GROUPS = ["0-19", "20-39", "40-59", "60+"]
TEST_FRACTION = 0.2


def parse_names(paths: list[Path]) -> tuple[list[Path], pd.DataFrame, int]:
    """Kept paths, their attribute codes and the number of skipped files."""
    kept, rows = [], []
    for path in paths:
        match = NAME_PATTERN.match(path.name)
        if match is None:
            continue
        age, gender, race = (int(g) for g in match.groups())
        kept.append(path)
        rows.append((int(np.digitize(age, AGE_EDGES)), gender, race))
    table = pd.DataFrame(rows, columns=["age_group", "gender", "race"], dtype="int64")
    return kept, table, len(paths) - len(kept)


class UTKFace(ImageFileDataset):
    skipped: int = 0


def build_utkface(split: str = "test", data_dir: str | Path | None = None, image_size: int = 64,
                  seed: int = 0) -> UTKFace:
    root = Path(data_dir)
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(".jpg"))
    kept, table, skipped = parse_names(paths)
    if not kept:
        raise DatasetError(f"no UTKFace image named '[age]_[gender]_[race]_[date&time].jpg' was found in "
                           f"'{root}' ({skipped} .jpg file(s) with other names).")
    train_idx, test_idx = seeded_split(len(kept), TEST_FRACTION, seed)
    idx = train_idx if split == "train" else test_idx
    names = {"age_group": AGE_GROUPS, "gender": GENDERS, "race": RACES}
    ds = UTKFace("utkface", split, [kept[i] for i in idx], table.iloc[idx], names, image_size,
                 "gender", ["race"])
    ds.skipped = skipped
    return ds


register_dataset(DatasetSpec(
    name="utkface",
    builder=build_utkface,
    kind="image",
    description="UTKFace faces labelled by file name (age group, gender, race); seeded 80/20 split.",
    default_target="gender",
    default_sensitive=["race"],
    embedded=False,
    options={"image_size": setting(64, "side of the square images the model reads", min=8, unit="pixels"),
             "seed": setting(0, "seed of the random train/val/test division", min=0)},
    splits=("train", "test"),
))
