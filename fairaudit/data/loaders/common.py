"""Helpers shared by the loaders: file checks, value coding, seeded splits, lazy images."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torchvision.transforms.functional as TF
from PIL import Image, UnidentifiedImageError
from sklearn.model_selection import train_test_split

from fairaudit.data.base import FairDataset
from fairaudit.errors import DatasetError

# 64 megapixels (e.g. 8000 × 8000): far above any dataset image, far below what would exhaust memory.
MAX_IMAGE_PIXELS = 64_000_000


def require_path(path: Path, what: str) -> Path:
    """Return ``path`` if it exists, else raise a :class:`DatasetError` naming the expected file."""
    if not path.exists():
        raise DatasetError(f"expected {what} at '{path}', but it does not exist.")
    return path


def first_existing(folder: Path, names: Sequence[str], what: str) -> Path:
    """The first of ``names`` that exists in ``folder`` (e.g. ``x.csv`` or ``x.csv.gz``)."""
    for name in names:
        if (folder / name).exists():
            return folder / name
    raise DatasetError(f"expected {what} ('{' or '.join(names)}') in '{folder}', but none was found.")


def require_columns(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    """Raise a :class:`DatasetError` naming the columns of ``source`` that are missing."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(f"'{source}' lacks the column(s) {', '.join(map(repr, missing))}; "
                           f"found: {', '.join(map(str, frame.columns))}.")


def read_csv(path: Path, **kwargs) -> pd.DataFrame:
    """``pandas.read_csv`` with parse errors turned into a :class:`DatasetError`."""
    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise DatasetError(f"could not parse '{path}': {str(exc).splitlines()[0]}.") from None


def code_values(values: pd.Series, order: Sequence[str] | None = None,
                column: str = "column") -> tuple[np.ndarray, list[str]]:
    """Integer-code ``values`` in the given ``order`` (default: sorted distinct values).

    Returns the codes and the value names. With an explicit ``order`` an
    unexpected value raises a :class:`DatasetError` naming it.
    """
    if order is None:
        order = sorted(pd.unique(values).tolist(), key=lambda v: (isinstance(v, str), v))
    lookup = {v: k for k, v in enumerate(order)}
    codes = values.map(lookup)
    if codes.isna().any():
        bad = values[codes.isna()].iloc[0]
        raise DatasetError(f"{column} has the unexpected value {bad!r}; expected one of {', '.join(map(str, order))}.")
    return codes.to_numpy(dtype=np.int64), [str(v) for v in order]


def seeded_split(n: int, test_fraction: float, seed: int,
                 stratify: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices of a reproducible random split of ``n`` samples."""
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"the test fraction must lie strictly between 0 and 1, got {test_fraction}.")
    if n < 2:
        raise DatasetError(f"a train/test split needs at least 2 samples, got {n}.")
    train, test = train_test_split(np.arange(n), test_size=test_fraction, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(test)


def _too_large(path: str | Path, pixels: int | None) -> DatasetError:
    size = f"has {pixels:,} pixels" if pixels else "has too many pixels"
    return DatasetError(f"image '{path}' {size}, more than the {MAX_IMAGE_PIXELS:,} a dataset image may have "
                        "(a guard against decompression bombs); shrink it before auditing.")


def read_image(path: str | Path, size: int) -> torch.Tensor:
    """Decode one image as a float ``(3, size, size)`` tensor in ``[0, 1]``.

    The shorter side is resized to ``size`` and the centre cropped, so faces
    keep their aspect ratio. Images of more than ``MAX_IMAGE_PIXELS`` pixels
    are refused from their header, before any pixel is decoded.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise _too_large(path, img.width * img.height)
                img = img.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(f"image file '{path}' does not exist.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large(path, int(found.group(1)) if found else None) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"could not decode image '{path}': {exc}.") from None
    if img.size != (size, size):
        img = TF.center_crop(TF.resize(img, size, antialias=True), [size, size])
    return TF.to_tensor(img)


def check_first_image(paths: Sequence[Path], listed_in: str) -> None:
    """Catch a wrong folder early: the first listed image must exist (the rest are checked when read)."""
    if paths and not Path(paths[0]).exists():
        raise DatasetError(f"image '{paths[0]}' listed in {listed_in} does not exist; is the data folder right?")


def check_image_size(size: int) -> int:
    size = int(size)
    if not 4 <= size <= 1024:
        raise DatasetError(f"image_size must lie between 4 and 1024 pixels, got {size}.")
    return size


class ImageFileDataset(FairDataset):
    """Images stored one per file; each is decoded when its sample is requested."""

    kind = "image"

    def __init__(self, name: str, split: str, paths: Sequence[str | Path], attributes: pd.DataFrame,
                 value_names: dict[str, list[str]], image_size: int, default_target: str,
                 default_sensitive: Sequence[str]):
        self.name = name
        self.paths = [str(p) for p in paths]
        self.image_size = check_image_size(image_size)
        super().__init__(split, attributes, value_names, (3, self.image_size, self.image_size),
                         default_target, default_sensitive)

    def load_input(self, i: int) -> torch.Tensor:
        return read_image(self.paths[i], self.image_size)
