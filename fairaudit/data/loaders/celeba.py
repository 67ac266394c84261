"""CelebA (aligned and cropped faces) read from its official folder layout.

``data_dir`` must contain::

    img_align_celeba/000001.jpg ...
    list_attr_celeba.txt       # line 1: count; line 2: the 40 attribute names;
                               # then "filename v1 ... v40" with -1/1 values
    list_eval_partition.txt    # "filename 0|1|2"  (0 train, 1 val, 2 test)

All 40 binary attributes can serve as target or sensitive attribute, coded
0 (attribute absent, file value -1) and 1 (present, file value 1). The
defaults follow the FAAP and ASAC seed papers: target ``Smiling``, sensitive
``Male`` (0 Female, 1 Male).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fairaudit.data.loaders.common import ImageFileDataset, check_first_image, read_csv, require_path
from fairaudit.data.registry import DatasetSpec, register_dataset
from fairaudit.errors import DatasetError
from fairaudit.options import setting

IMAGE_DIR = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
VALUE_NAMES = {"Male": ["Female", "Male"]}


def read_attributes(path: Path) -> pd.DataFrame:
    """The attribute table indexed by file name, with -1/1 mapped to 0/1."""
    with open(path, encoding="utf-8") as handle:
        handle.readline()
        names = handle.readline().split()
    if len(names) != 40:
        raise DatasetError(f"the second line of '{path}' should list the 40 attribute names, found {len(names)}.")
    table = read_csv(path, sep=r"\s+", skiprows=2, header=None, names=["file", *names], index_col="file")
    values = table.to_numpy()
    if table.isna().any().any() or not np.isin(values, (-1, 1)).all():
        raise DatasetError(f"'{path}' must hold one -1/1 value per attribute on every row.")
    return (table > 0).astype(np.int64)


def read_partition(path: Path) -> pd.Series:
    table = read_csv(path, sep=r"\s+", header=None, names=["file", "partition"], index_col="file")
    if table["partition"].isna().any() or not table["partition"].isin(list(SPLIT_CODES.values())).all():
        raise DatasetError(f"'{path}' must give each file a partition of 0 (train), 1 (val) or 2 (test).")
    return table["partition"]


def build_celeba(split: str = "test", data_dir: str | Path | None = None, image_size: int = 64) -> ImageFileDataset:
    root = Path(data_dir)
    image_dir = require_path(root / IMAGE_DIR, "the CelebA image folder")
    attributes = read_attributes(require_path(root / ATTR_FILE, "the CelebA attribute file"))
    partition = read_partition(require_path(root / PARTITION_FILE, "the CelebA partition file"))
    files = partition.index[partition.to_numpy() == SPLIT_CODES[split]]
    missing = files.difference(attributes.index)
    if len(missing):
        raise DatasetError(f"{len(missing)} file(s) of {PARTITION_FILE} have no row in {ATTR_FILE}, "
                           f"e.g. '{missing[0]}'.")
    table = attributes.loc[files]
    names = {c: VALUE_NAMES.get(c, [f"not {c}", c]) for c in table.columns}
    paths = [image_dir / f for f in files]
    check_first_image(paths, PARTITION_FILE)
    return ImageFileDataset("celeba", split, paths, table, names, image_size, "Smiling", ["Male"])


register_dataset(DatasetSpec(
    name="celeba",
    builder=build_celeba,
    kind="image",
    description="CelebA aligned faces with 40 binary attributes, official train/val/test partition.",
    default_target="Smiling",
    default_sensitive=["Male"],
    embedded=False,
    options={"image_size": setting(64, "side of the square images the model reads", min=8, unit="pixels")},
    splits=("train", "val", "test"),
))
