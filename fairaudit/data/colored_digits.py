"""Coloured digits: a small C-MNIST built from scikit-learn's bundled digits.

Follows the C-MNIST protocol of the AEDA seed paper (§4): the background
colour is a shortcut in training and carries no information in testing.

* The 1,797 8×8 digits of :func:`sklearn.datasets.load_digits` are split
  70/30, stratified by digit and seeded.
* **train**: digits 0–4 on red, 5–9 on brown. With ``bias < 1`` only that
  fraction of each digit follows the rule; the others get the other colour.
* **test**: within each digit, half the images are red and half brown (in
  random order), so colour is independent of the digit – a fair split. With
  ``test_bias`` other than 0.5 that fraction of each digit follows the
  training rule instead (e.g. 1.0: the deployment distribution of a fully
  confounded training set). There is no validation split.

Each image is upsampled to ``image_size`` pixels (default 28, as MNIST) and
drawn as a white stroke over its background; the background colour is
jittered per sample so that colour is a distribution, not a constant.
Target ``digit`` (10 classes), sensitive ``color`` (0 red, 1 brown).
Samples are rendered on request, once (as 8-bit images, kept in the
workspace's render cache), and are identical for the same ``seed``.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from fairaudit.options import setting
from fairaudit.data.base import FairDataset
from fairaudit.data.loaders.common import check_image_size, seeded_split
from fairaudit.data.render_cache import RenderCache
from fairaudit.data.registry import DatasetSpec, register_dataset
from fairaudit.errors import DatasetError

COLORS = {"red": (0.80, 0.12, 0.10), "brown": (0.55, 0.34, 0.14)}
COLOR_NAMES = list(COLORS)
COLOR_JITTER = 0.06  # half-width of the uniform per-channel jitter
TEST_FRACTION = 0.3


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64)


def assign_colors(digits: np.ndarray, split: str, bias: float, rng: np.random.Generator,
                  test_bias: float = 0.5) -> np.ndarray:
    """Background colour code (0 red, 1 brown) of each sample, per the protocol above."""
    rule = (digits >= 5).astype(np.int64)
    colors = rule.copy()
    follows = bias if split == "train" else test_bias
    for d in np.unique(digits):
        idx = rng.permutation(np.flatnonzero(digits == d))
        if split == "train" or follows != 0.5:
            n_flip = int(round((1.0 - follows) * len(idx)))
            colors[idx[:n_flip]] = 1 - rule[idx[:n_flip]]
        else:
            colors[idx] = (np.arange(len(idx)) + rng.integers(2)) % 2  # odd counts: random extra
    return colors


class ColoredDigits(FairDataset):
    name = "colored-digits"
    kind = "image"

    def __init__(self, split: str, image_size: int = 28, bias: float = 1.0, seed: int = 0, test_bias: float = 0.5):
        if not 0.0 <= bias <= 1.0:
            raise DatasetError(f"bias must lie between 0 and 1, got {bias}.")
        if not 0.0 <= test_bias <= 1.0:
            raise DatasetError(f"test_bias must lie between 0 and 1, got {test_bias}.")
        self.image_size = check_image_size(image_size)
        images, digits = _digits()
        train_idx, test_idx = seeded_split(len(digits), TEST_FRACTION, seed, stratify=digits)
        idx = train_idx if split == "train" else test_idx
        rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        self.strokes = images[idx]
        colors = assign_colors(digits[idx], split, bias, rng, test_bias)
        base = np.array([COLORS[c] for c in COLOR_NAMES], dtype=np.float32)[colors]
        jitter = rng.uniform(-COLOR_JITTER, COLOR_JITTER, size=base.shape).astype(np.float32)
        self.backgrounds = np.clip(base + jitter, 0.0, 1.0)
        attributes = pd.DataFrame({"digit": digits[idx], "color": colors})
        names = {"digit": [str(d) for d in range(10)], "color": COLOR_NAMES}
        super().__init__(split, attributes, names, (3, self.image_size, self.image_size), "digit", ["color"])
        drawing = hashlib.sha256(self.strokes.tobytes() + self.backgrounds.tobytes()).hexdigest()
        self._renders = RenderCache(f"colored-digits-{split}", {"image_size": self.image_size, "drawing": drawing},
                                    len(self), self.input_shape)

    def load_input(self, i: int) -> torch.Tensor:
        return self._renders.get(i, self.draw)

    def draw(self, i: int) -> torch.Tensor:
        """Image ``i`` as drawn, in float32 (:meth:`load_input` returns its 8-bit version)."""
        stroke = torch.from_numpy(self.strokes[i])[None, None]
        alpha = F.interpolate(stroke, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)[0]
        alpha = alpha.clamp(0.0, 1.0)
        background = torch.from_numpy(self.backgrounds[i])[:, None, None]
        return background * (1.0 - alpha) + alpha  # white stroke over the background


def build_colored_digits(split: str = "test", data_dir=None, image_size: int = 28, bias: float = 1.0,
                         seed: int = 0, test_bias: float = 0.5) -> ColoredDigits:
    return ColoredDigits(split, image_size=image_size, bias=bias, seed=seed, test_bias=test_bias)


register_dataset(DatasetSpec(
    name="colored-digits",
    builder=build_colored_digits,
    kind="image",
    description="C-MNIST-style digits: colour follows the digit in train (0-4 red, 5-9 brown), not in test.",
    default_target="digit",
    default_sensitive=["color"],
    embedded=True,
    options={"image_size": setting(28, "side of the square images the model reads", min=8, unit="pixels"),
             "bias": setting(1.0, "share of the train digits on their class colour (0–4 red, 5–9 brown)",
                             min=0, max=1),
             "seed": setting(0, "seed of the random draws that build the data", min=0),
             "test_bias": setting(0.5, "that share in the test split (0.5: colour independent of the digit)",
                                  min=0, max=1)},
    splits=("train", "test"),
))
