"""CIFAR-10S: CIFAR-10 with a colour/greyscale skew (Wang et al., CVPR 2020).

``data_dir`` must contain the CIFAR-10 "python version" batches, either
directly or in ``cifar-10-batches-py/``: ``data_batch_1`` … ``data_batch_5``
and ``test_batch``.

* **train** (50,000 images): in classes 0–4 a fraction ``skew`` (default
  0.95) of the images is in colour and the rest greyscale; classes 5–9 the
  reverse. Which images are greyed is fixed by ``seed``.
* **test** (2 × 10,000 images): every test image appears once in colour
  (indices ``0..N-1``) and once in greyscale (``N..2N-1``).

Target ``label`` (10 classes), sensitive ``color`` (0 color, 1 gray).
Inputs keep CIFAR's 32 px unless ``image_size`` says otherwise.

The batches are Python pickles. They are read with :class:`BatchUnpickler`,
which can only rebuild dicts, lists, strings, ints and numpy arrays, so a
tampered file cannot run code; anything else raises a
:class:`~fairaudit.errors.DatasetError`.
"""

from __future__ import annotations

import importlib
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from fairaudit.data.base import FairDataset
from fairaudit.data.loaders.common import check_image_size
from fairaudit.data.registry import DatasetSpec, register_dataset
from fairaudit.errors import DatasetError
from fairaudit.options import setting

BATCH_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{k}" for k in range(1, 6)]
TEST_BATCHES = ["test_batch"]
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
COLOR_NAMES = ["color", "gray"]


def _numpy_attr(modules: tuple[str, ...], name: str):
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    return None


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(text, "latin1"); no other codec is needed.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused to call _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], object]:
    import builtins

    allowed: dict[tuple[str, str], object] = {}
    for module in ("builtins", "__builtin__"):
        for name in ("dict", "list", "bytes", "str", "int"):
            allowed[(module, name)] = getattr(builtins, name)
    reconstruct = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")
    frombuffer = _numpy_attr(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
    for module in ("numpy.core.numeric", "numpy._core.numeric"):  # arrays pickled with protocol 5
        allowed[(module, "_frombuffer")] = frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("_codecs", "encode")] = _latin1_encode
    return {k: v for k, v in allowed.items() if v is not None}


class BatchUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a CIFAR batch needs; it refuses all others."""

    ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load '{module}.{name}'") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused a persistent reference")


def _get(batch: dict, key: str):
    return batch.get(key.encode(), batch.get(key))


@lru_cache(maxsize=6)
def read_batch(path: str, mtime_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 3, 32, 32) uint8, labels (N,) int64)`` of one batch file (cached per process)."""
    try:
        with open(path, "rb") as handle:
            batch = BatchUnpickler(handle, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DatasetError(f"'{path}' is not a plain CIFAR-10 batch ({exc}); it was not loaded.") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, MemoryError) as exc:
        raise DatasetError(f"could not read the CIFAR-10 batch '{path}': {exc}.") from None
    data = _get(batch, "data") if isinstance(batch, dict) else None
    labels = _get(batch, "labels") if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"'{path}' should hold a 'data' array of shape (N, 3072) and dtype uint8.")
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels.shape != (len(data),) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DatasetError(f"'{path}' should hold one 'labels' entry in 0..9 per image.")
    return data.reshape(-1, 3, 32, 32), labels


def _batch_paths(root: Path, names: list[str]) -> list[Path]:
    folder = root / BATCH_FOLDER if (root / BATCH_FOLDER).is_dir() else root
    paths = [folder / n for n in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"expected the CIFAR-10 python batch(es) {', '.join(missing)} in '{folder}' "
                           f"(or in '{root / BATCH_FOLDER}').")
    return paths


def skewed_gray_flags(labels: np.ndarray, skew: float, seed: int) -> np.ndarray:
    """Greyscale flag per training image: classes 0–4 keep ``skew`` in colour, 5–9 ``skew`` in grey."""
    rng = np.random.default_rng(seed)
    gray = np.zeros(len(labels), dtype=np.int64)
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_major = int(round(skew * len(idx)))
        major, minor = (0, 1) if c < 5 else (1, 0)
        gray[idx[:n_major]] = major
        gray[idx[n_major:]] = minor
    return gray


class CIFAR10S(FairDataset):
    name = "cifar10s"
    kind = "image"

    def __init__(self, split: str, paths: list[Path], image_size: int = 32, skew: float = 0.95, seed: int = 0):
        if not 0.0 <= skew <= 1.0:
            raise DatasetError(f"skew must lie between 0 and 1, got {skew}.")
        self.image_size = check_image_size(image_size)
        self.batch_keys = [(str(p), p.stat().st_mtime_ns) for p in paths]
        batch_ids, rows, labels = [], [], []
        for b, key in enumerate(self.batch_keys):
            batch_labels = read_batch(*key)[1]
            batch_ids.append(np.full(len(batch_labels), b))
            rows.append(np.arange(len(batch_labels)))
            labels.append(batch_labels)
        batch_ids, rows, labels = map(np.concatenate, (batch_ids, rows, labels))
        if split == "train":
            gray = skewed_gray_flags(labels, skew, seed)
        else:
            n = len(labels)
            batch_ids, rows, labels = np.tile(batch_ids, 2), np.tile(rows, 2), np.tile(labels, 2)
            gray = np.repeat([0, 1], n)
        self.batch_ids, self.rows = batch_ids, rows
        attributes = pd.DataFrame({"label": labels, "color": gray})
        super().__init__(split, attributes, {"label": CLASS_NAMES, "color": COLOR_NAMES},
                         (3, self.image_size, self.image_size), "label", ["color"])

    def load_input(self, i: int) -> torch.Tensor:
        images = read_batch(*self.batch_keys[self.batch_ids[i]])[0]
        x = torch.from_numpy(images[self.rows[i]].astype(np.float32) / 255.0)
        if self._codes[i, self._col["color"]]:
            x = TF.rgb_to_grayscale(x, num_output_channels=3)
        if self.image_size != 32:
            x = F.interpolate(x[None], size=(self.image_size,) * 2, mode="bilinear", antialias=True,
                              align_corners=False)[0].clamp(0.0, 1.0)
        return x


def build_cifar10s(split: str = "test", data_dir: str | Path | None = None, image_size: int = 32,
                   skew: float = 0.95, seed: int = 0) -> CIFAR10S:
    paths = _batch_paths(Path(data_dir), TRAIN_BATCHES if split == "train" else TEST_BATCHES)
    return CIFAR10S(split, paths, image_size=image_size, skew=skew, seed=seed)


register_dataset(DatasetSpec(
    name="cifar10s",
    builder=build_cifar10s,
    kind="image",
    description="CIFAR-10S (Wang et al. 2020): colour/greyscale skewed train set, colour+grey test copies.",
    default_target="label",
    default_sensitive=["color"],
    embedded=False,
    options={"image_size": setting(32, "side of the square images the model reads", min=8, unit="pixels"),
             "skew": setting(0.95, "share of the train images in colour for classes 0-4 and in grey for 5-9 (0.5: no skew)", min=0.5, max=1),
             "seed": setting(0, "seed of the random draws that build the data", min=0)},
    splits=("train", "test"),
))
