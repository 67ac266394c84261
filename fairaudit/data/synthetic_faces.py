"""``synthetic-faces``: procedurally drawn faces with a controllable shortcut.

The default demo dataset. Every image is a 64×64 RGB face drawn by
:func:`~fairaudit.data.faces_draw.render_face` with CelebA-style attributes:

* ``Smiling`` (default target) – mouth corners raised by about two pixels;
* ``Male`` (default sensitive attribute) – short hair, beard or stubble and a
  broader jaw, i.e. many pixels; female faces have long hair framing the face;
* ``Blond_Hair``, ``Eyeglasses``, ``Young`` (old faces: grey hair, wrinkles);
* ``Skin_Tone`` – three levels (light / medium / dark).

The option ``bias`` sets how strongly ``Smiling`` is tied to ``Male`` in the
**train** split: ``P(Male=0 | Smiling=1) = P(Male=1 | Smiling=0) = bias``, so
0.9 makes 90 % of smiling training faces female and 90 % of non-smiling ones
male, and 0.5 makes them independent. A model trained on a biased split learns
the large gender cue in place of the subtle smile, which a fairness audit then
exposes (equalised-odds gap on the balanced test split).

The ``val`` split is held-out data of the training distribution, as in CelebA
or any real dataset: its tie is ``val_bias``, by default the same as ``bias``,
so a method that fits on ``val`` sees the same shortcut as one that fits on
``train``. The ``test`` split is balanced by default (``test_bias`` 0.5: the
four ``(Smiling, Male)`` cells have equal size); ``test_bias=0.9`` measures a
model on the deployment distribution instead. Half of every split is smiling.

The other attributes are drawn independently in every split, except that, as
in CelebA, blond hair is more common on female faces (25 % vs 8 %).
``Young`` is 1 for 75 % of faces, ``Eyeglasses`` for 20 %; ``Skin_Tone`` is
light / medium / dark for 50 / 30 / 20 %.

Sample ``i`` of a split is fully determined by ``(seed, split, i)`` and the
split's attribute table (itself determined by ``seed``, ``split``, ``bias``
and the split size); images are rendered lazily in :meth:`load_input`, as
8-bit images, once: later passes read them from the workspace's render cache
(:mod:`fairaudit.data.render_cache`).
:meth:`SyntheticFaces.region_mask` returns where the mouth, eyes, hair, beard
area, face, visible skin and background are in each image, for scoring
whether attributions fall on the target or on the sensitive cue.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import torch

from fairaudit.options import setting
from fairaudit.data.base import FairDataset
from fairaudit.data.faces_draw import REGION_NAMES, render_face
from fairaudit.data.render_cache import RenderCache
from fairaudit.data.registry import DatasetSpec, register_dataset
from fairaudit.errors import DatasetError

__all__ = ["SyntheticFaces", "build_synthetic_faces", "make_attributes", "render_face", "SPLIT_IDS"]

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}

VALUE_NAMES = {
    "Smiling": ["Not smiling", "Smiling"],
    "Male": ["Female", "Male"],
    "Blond_Hair": ["Not blond", "Blond"],
    "Eyeglasses": ["No eyeglasses", "Eyeglasses"],
    "Young": ["Old", "Young"],
    "Skin_Tone": ["Light", "Medium", "Dark"],
}

P_BLOND = {0: 0.25, 1: 0.08}  # given Male = 0 / 1
P_YOUNG = 0.75
P_EYEGLASSES = 0.20
P_SKIN_TONE = (0.5, 0.3, 0.2)

DEFAULT_SIZES = {"train": 2000, "val": 1000, "test": 2000}


def _cell_counts(n: int, bias: float | None) -> dict[tuple[int, int], int]:
    """Number of faces per ``(Smiling, Male)`` cell; ``bias=None`` gives equal cells."""
    n_smiling = n // 2
    n_neutral = n - n_smiling
    if bias is None:
        return {(1, 0): n_smiling - n_smiling // 2, (1, 1): n_smiling // 2,
                (0, 0): n_neutral // 2, (0, 1): n_neutral - n_neutral // 2}
    smiling_female = int(round(bias * n_smiling))
    neutral_male = int(round(bias * n_neutral))
    return {(1, 0): smiling_female, (1, 1): n_smiling - smiling_female,
            (0, 0): n_neutral - neutral_male, (0, 1): neutral_male}


def split_bias(split: str, bias: float, val_bias: float | None = None, test_bias: float = 0.5) -> float:
    """The Smiling–Male tie of ``split``: ``bias`` for train, ``val_bias`` (default ``bias``) for val,
    ``test_bias`` for test."""
    if split == "train":
        return float(bias)
    if split == "val":
        return float(bias if val_bias is None else val_bias)
    return float(test_bias)


def make_attributes(n: int, split: str, bias: float, seed: int, val_bias: float | None = None,
                    test_bias: float = 0.5) -> pd.DataFrame:
    """The attribute table of a split, with the tie :func:`split_bias` gives it (0.5: four equal cells)."""
    rng = np.random.default_rng([seed, SPLIT_IDS[split], 1_000_003])
    tie = split_bias(split, bias, val_bias, test_bias)
    cells = _cell_counts(n, None if tie == 0.5 and split != "train" else tie)
    smiling = np.concatenate([np.full(k, s) for (s, _), k in cells.items()])
    male = np.concatenate([np.full(k, m) for (_, m), k in cells.items()])
    order = rng.permutation(n)
    smiling, male = smiling[order], male[order]
    p_blond = np.where(male == 1, P_BLOND[1], P_BLOND[0])
    return pd.DataFrame({
        "Smiling": smiling,
        "Male": male,
        "Blond_Hair": (rng.random(n) < p_blond).astype(np.int64),
        "Eyeglasses": (rng.random(n) < P_EYEGLASSES).astype(np.int64),
        "Young": (rng.random(n) < P_YOUNG).astype(np.int64),
        "Skin_Tone": rng.choice(len(P_SKIN_TONE), size=n, p=P_SKIN_TONE),
    })


class SyntheticFaces(FairDataset):
    """Lazily rendered procedural faces; see the module docstring for the attributes."""

    name = "synthetic-faces"
    kind = "image"
    region_names = REGION_NAMES

    def __init__(self, split: str = "train", n: int | None = None, bias: float = 0.9, seed: int = 0,
                 image_size: int = 64, val_bias: float | None = None, test_bias: float = 0.5):
        if split not in SPLIT_IDS:
            raise DatasetError(f"dataset 'synthetic-faces' has no split '{split}'; splits: train, val, test.")
        val_bias = _optional_bias(val_bias)
        for name, value in (("bias", bias), ("val_bias", val_bias), ("test_bias", test_bias)):
            if value is not None and not 0.0 <= float(value) <= 1.0:
                raise DatasetError(f"option '{name}' must lie in [0, 1], got {value}.")
        if not 16 <= int(image_size) <= 256:
            raise DatasetError(f"option 'image_size' must lie between 16 and 256 pixels, got {image_size}.")
        n = DEFAULT_SIZES[split] if n is None else int(n)
        if n < 4:
            raise DatasetError(f"a synthetic-faces split needs at least 4 samples, got {n}.")
        self.bias = float(bias)
        self.split_bias = split_bias(split, self.bias, val_bias, float(test_bias))
        self.seed = int(seed)
        self.image_size = int(image_size)
        self._split_id = SPLIT_IDS[split]
        self._mask_cache: tuple[int, dict[str, np.ndarray]] | None = None
        super().__init__(split, make_attributes(n, split, self.bias, self.seed, val_bias, float(test_bias)),
                         VALUE_NAMES,
                         (3, self.image_size, self.image_size), "Smiling", ["Male"])
        self._columns = list(self.attributes.columns)
        table = hashlib.sha256(self._codes.tobytes()).hexdigest()
        self._renders = RenderCache(f"synthetic-faces-{split}", {"seed": self.seed, "split": split,
                                                                 "image_size": self.image_size, "table": table},
                                    len(self), self.input_shape)

    def attrs(self, i: int) -> dict[str, int]:
        """The attribute codes of sample ``i`` as a dict (the input of :func:`render_face`)."""
        return dict(zip(self._columns, map(int, self._codes[int(i)])))

    def render(self, i: int, masks: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return render_face(self.attrs(i), [self.seed, self._split_id, int(i)], self.image_size, masks=masks)

    def load_input(self, i: int) -> torch.Tensor:
        return self._renders.get(i, lambda j: self.render(j)[0])

    def region_mask(self, i: int, region: str) -> np.ndarray:
        """Boolean ``(H, W)`` mask of ``region`` (one of :attr:`region_names`) in image ``i``."""
        if region not in self.region_names:
            raise DatasetError(f"unknown region '{region}'; regions: {', '.join(self.region_names)}.")
        i = int(i)
        if not 0 <= i < len(self):
            raise DatasetError(f"sample index {i} is out of range for a split of {len(self)} images.")
        if self._mask_cache is None or self._mask_cache[0] != i:
            self._mask_cache = (i, self.render(i, masks=True)[1])
        return self._mask_cache[1][region].copy()


def _optional_bias(value) -> float | None:
    """``val_bias`` as given: a number, or None / "" / "bias" for "the same as bias"."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "bias")):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"option 'val_bias' expects a number in [0, 1] (or nothing for the train bias), "
                           f"got {value!r}.") from None


def build_synthetic_faces(split: str = "train", data_dir=None, bias: float = 0.9, seed: int = 0,
                          image_size: int = 64, n_train: int = DEFAULT_SIZES["train"],
                          n_val: int = DEFAULT_SIZES["val"], n_test: int = DEFAULT_SIZES["test"],
                          val_bias: float | None = None, test_bias: float = 0.5) -> SyntheticFaces:
    """Registry builder: ``n_train`` / ``n_val`` / ``n_test`` set the split sizes."""
    n = {"train": n_train, "val": n_val, "test": n_test}.get(split)
    return SyntheticFaces(split, n=n, bias=bias, seed=seed, image_size=image_size, val_bias=val_bias,
                          test_bias=test_bias)


register_dataset(DatasetSpec(
    name="synthetic-faces",
    builder=build_synthetic_faces,
    kind="image",
    description="Procedural 64×64 faces with CelebA-style attributes; 'bias' ties Smiling to Male in the "
                "train split and, unless 'val_bias' says otherwise, in val; test is balanced ('test_bias' 0.5).",
    default_target="Smiling",
    default_sensitive=["Male"],
    embedded=True,
    options={"bias": setting(0.9, "tie of Smiling to Male in the train split: P(Male=0 | Smiling=1) = "
                                  "P(Male=1 | Smiling=0) = bias (0.5: independent)", min=0, max=1),
             "seed": setting(0, "seed of the random draws that build the data",
                             min=0),
             "image_size": setting(64, "side of the square images the model reads", min=8, unit="pixels"),
             "n_train": setting(DEFAULT_SIZES["train"], "faces in the train split", min=1),
             "n_val": setting(DEFAULT_SIZES["val"], "faces in the val split", min=1),
             "n_test": setting(DEFAULT_SIZES["test"], "faces in the test split", min=1),
             "val_bias": setting(None, "bias of the val split (empty: the same as bias)", type=float, min=0, max=1,
                                 null_text=("", "none", "bias")),
             "test_bias": setting(0.5, "bias of the test split (0.5: smiling independent of sex)", min=0, max=1)},
    splits=("train", "val", "test"),
))
