"""FairFace: faces balanced across seven race groups.

``data_dir`` must contain ``fairface_label_train.csv`` and
``fairface_label_val.csv`` (columns ``file, age, gender, race,
service_test``) and the images at the paths the ``file`` column gives,
relative to ``data_dir`` (``train/1.jpg``, ``val/1.jpg``). FairFace has no
test split: ``test`` is the official validation split. Attributes:
``age`` (9 bins), ``gender`` (Female, Male), ``race`` (7 groups). Default
target ``gender``, sensitive ``race``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fairaudit.data.loaders.common import (ImageFileDataset, check_first_image, code_values, read_csv, require_columns,
                                           require_path)
from fairaudit.data.registry import DatasetSpec, register_dataset
from fairaudit.options import setting

LABEL_FILES = {"train": "fairface_label_train.csv", "val": "fairface_label_val.csv",
               "test": "fairface_label_val.csv"}
AGES = ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70"]
GENDERS = ["Female", "Male"]
RACES = ["White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern"]


def build_fairface(split: str = "test", data_dir: str | Path | None = None, image_size: int = 64) -> ImageFileDataset:
    root = Path(data_dir)
    label_file = require_path(root / LABEL_FILES[split], f"the FairFace label file for the {split} split")
    labels = read_csv(label_file, dtype=str, keep_default_na=False)
    require_columns(labels, ["file", "age", "gender", "race"], label_file.name)
    table, names = {}, {}
    for column, order in (("age", AGES), ("gender", GENDERS), ("race", RACES)):
        table[column], names[column] = code_values(labels[column].str.strip(), order,
                                                   f"column '{column}' of {label_file.name}")
    paths = [root / f for f in labels["file"]]
    check_first_image(paths, label_file.name)
    return ImageFileDataset("fairface", split, paths, pd.DataFrame(table), names, image_size, "gender", ["race"])


register_dataset(DatasetSpec(
    name="fairface",
    builder=build_fairface,
    kind="image",
    description="FairFace faces (age, gender, 7 race groups); official train/val split, test = val.",
    default_target="gender",
    default_sensitive=["race"],
    embedded=False,
    options={"image_size": setting(64, "side of the square images the model reads", min=8, unit="pixels")},
    splits=("train", "val", "test"),
))
