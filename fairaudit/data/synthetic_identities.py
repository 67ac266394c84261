"""``synthetic-identities``: many photos of each of many drawn people, for face-recognition audits.

Each *identity* is one person drawn by :func:`~fairaudit.data.faces_draw.render_face`: a fixed set of facial
geometry and appearance (face and jaw shape, eye and mouth placement, lips, skin and hair colour, iris, hair
length, style and hairline, beard style and extent) and three attributes of the person, ``Male``,
``Skin_Tone`` (light / medium / dark, 50 / 30 / 20 %) and ``Young`` (75 %). Blond hair is drawn per person
too (25 % of women, 8 % of men). Every *image* of a person is another photo of the same face: pose jitter
(shift, scale, rotation), background, clothes, lighting, noise, expression (``Smiling``, half of the photos)
and eyeglasses (``Eyeglasses``, a fifth of them) change from photo to photo.

The two splits hold disjoint people, as a face-recognition benchmark does: ``train`` (``n_train_ids``
identities of ``train_images`` photos each) trains an embedding, ``test`` (``n_test_ids`` identities of
``test_images`` photos) is the gallery it is audited on. ``train_male`` and ``test_male`` set the share of
male identities of each split (0.5: balanced). The target is ``identity`` (one class per person of the split);
``Male``, ``Skin_Tone`` and ``Young`` are the sensitive attributes to audit by, and ``identity_attributes()``
gives them per person.

Photo ``j`` of person ``k`` is fully determined by ``(seed, split, k, j)``; the person by ``(seed, split, k)``.
Images are drawn once and then read from the workspace's render cache.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import torch

from fairaudit.data.base import FairDataset
from fairaudit.data.faces_draw import IDENTITY_DRAWS, _N_DRAWS, render_face
from fairaudit.data.render_cache import RenderCache
from fairaudit.data.registry import DatasetSpec, register_dataset
from fairaudit.errors import DatasetError
from fairaudit.options import setting

__all__ = ["SyntheticIdentities", "build_synthetic_identities", "identity_table"]

NAME = "synthetic-identities"
SPLIT_IDS = {"train": 0, "test": 1}
PERSON_ATTRIBUTES = ("Male", "Skin_Tone", "Young", "Blond_Hair")
VALUE_NAMES = {
    "Male": ["Female", "Male"],
    "Skin_Tone": ["Light", "Medium", "Dark"],
    "Young": ["Old", "Young"],
    "Blond_Hair": ["Not blond", "Blond"],
    "Smiling": ["Not smiling", "Smiling"],
    "Eyeglasses": ["No eyeglasses", "Eyeglasses"],
}
P_SKIN_TONE = (0.5, 0.3, 0.2)
P_YOUNG = 0.75
P_BLOND = {0: 0.25, 1: 0.08}
P_SMILING = 0.5
P_EYEGLASSES = 0.2
_IDENTITY_MASK = np.zeros(_N_DRAWS, bool)
_IDENTITY_MASK[list(IDENTITY_DRAWS)] = True
DEFAULTS = {"seed": 0, "image_size": 32, "n_train_ids": 200, "train_images": 10, "n_test_ids": 120,
            "test_images": 10, "train_male": 0.5, "test_male": 0.5}


def identity_table(n_ids: int, male_share: float, split: str, seed: int) -> pd.DataFrame:
    """The people of a split: ``round(male_share · n_ids)`` men in random order, the other attributes drawn."""
    rng = np.random.default_rng([seed, 7, SPLIT_IDS[split], 1])
    n_male = int(round(male_share * n_ids))
    male = rng.permutation(np.r_[np.ones(n_male, np.int64), np.zeros(n_ids - n_male, np.int64)])
    p_blond = np.where(male == 1, P_BLOND[1], P_BLOND[0])
    return pd.DataFrame({
        "Male": male,
        "Skin_Tone": rng.choice(len(P_SKIN_TONE), size=n_ids, p=P_SKIN_TONE),
        "Young": (rng.random(n_ids) < P_YOUNG).astype(np.int64),
        "Blond_Hair": (rng.random(n_ids) < p_blond).astype(np.int64),
    })


class SyntheticIdentities(FairDataset):
    """Photos of drawn people; ``ds.identities`` gives each sample's person (see the module docstring)."""

    name = NAME
    kind = "image"

    def __init__(self, split: str = "test", n_ids: int = 120, images_per_id: int = 10, male_share: float = 0.5,
                 seed: int = 0, image_size: int = 32):
        if split not in SPLIT_IDS:
            raise DatasetError(f"dataset '{NAME}' has no split '{split}'; splits: train, test.")
        if not 2 <= int(n_ids) <= 100_000:
            raise DatasetError(f"a {NAME} split needs between 2 and 100000 identities, got {n_ids}.")
        if not 1 <= int(images_per_id) <= 1000:
            raise DatasetError(f"images per identity must lie between 1 and 1000, got {images_per_id}.")
        if not 0.0 <= float(male_share) <= 1.0:
            raise DatasetError(f"the share of male identities must lie in [0, 1], got {male_share}.")
        if not 16 <= int(image_size) <= 256:
            raise DatasetError(f"option 'image_size' must lie between 16 and 256 pixels, got {image_size}.")
        self.seed, self.image_size = int(seed), int(image_size)
        self.n_ids, self.images_per_id = int(n_ids), int(images_per_id)
        self._split_id = SPLIT_IDS[split]
        people = identity_table(self.n_ids, float(male_share), split, self.seed)
        self.people = people
        identity = np.repeat(np.arange(self.n_ids), self.images_per_id)
        photo = np.tile(np.arange(self.images_per_id), self.n_ids)
        rng = np.random.default_rng([self.seed, 7, self._split_id, 2])
        table = people.iloc[identity].reset_index(drop=True)
        table.insert(0, "identity", identity)
        table["Smiling"] = (rng.random(len(table)) < P_SMILING).astype(np.int64)
        table["Eyeglasses"] = (rng.random(len(table)) < P_EYEGLASSES).astype(np.int64)
        self._photo = photo
        names = {**VALUE_NAMES, "identity": [f"{split}-{k:05d}" for k in range(self.n_ids)]}
        super().__init__(split, table, names, (3, self.image_size, self.image_size), "identity", ["Male"])
        digest = hashlib.sha256(self._codes.tobytes()).hexdigest()
        self._renders = RenderCache(f"{NAME}-{split}", {"seed": self.seed, "split": split,
                                                         "image_size": self.image_size, "table": digest},
                                    len(self), self.input_shape)

    @property
    def identities(self) -> np.ndarray:
        """The identity code of every sample."""
        return self._codes[:, self._col["identity"]]

    def identity_attributes(self) -> pd.DataFrame:
        """One row per identity (index: identity code) with its person attributes."""
        return self.people.copy()

    def render(self, i: int) -> np.ndarray:
        i = int(i)
        k, j = int(self.identities[i]), int(self._photo[i])
        person = np.random.default_rng([self.seed, 7, self._split_id, 3, k]).random(_N_DRAWS)
        photo_seed = [self.seed, 7, self._split_id, 4, k, j]
        photo = np.random.default_rng(photo_seed).random(_N_DRAWS)
        draws = np.where(_IDENTITY_MASK, person, photo)
        attrs = {c: int(self._codes[i, self._col[c]]) for c in (*PERSON_ATTRIBUTES, "Smiling", "Eyeglasses")}
        return render_face(attrs, [*photo_seed, 1], self.image_size, masks=False, draws=draws)[0]

    def load_input(self, i: int) -> torch.Tensor:
        return self._renders.get(i, self.render)


def build_synthetic_identities(split: str = "test", data_dir=None, seed: int = 0, image_size: int = 32,
                               n_train_ids: int = DEFAULTS["n_train_ids"],
                               train_images: int = DEFAULTS["train_images"],
                               n_test_ids: int = DEFAULTS["n_test_ids"], test_images: int = DEFAULTS["test_images"],
                               train_male: float = 0.5, test_male: float = 0.5) -> SyntheticIdentities:
    """Registry builder: the options of each split are ``n_<split>_ids``, ``<split>_images``, ``<split>_male``."""
    if split == "train":
        return SyntheticIdentities("train", n_train_ids, train_images, train_male, seed, image_size)
    return SyntheticIdentities(split, n_test_ids, test_images, test_male, seed, image_size)


register_dataset(DatasetSpec(
    name=NAME,
    builder=build_synthetic_identities,
    kind="image",
    description="Procedural people, several photos each (pose, light, expression, eyeglasses vary), for "
                "face-recognition audits; train and test hold disjoint identities, 'train_male' / 'test_male' "
                "set their share of men.",
    default_target="identity",
    default_sensitive=["Male"],
    embedded=True,
    options={"seed": setting(DEFAULTS["seed"], "seed of the random draws that build the people and photos", min=0),
             "image_size": setting(DEFAULTS["image_size"], "side of the square images the model reads", min=8,
                                   unit="pixels"),
             "n_train_ids": setting(DEFAULTS["n_train_ids"], "people in the train split", min=2),
             "train_images": setting(DEFAULTS["train_images"], "photos of each train person", min=1),
             "n_test_ids": setting(DEFAULTS["n_test_ids"], "people in the test split", min=2),
             "test_images": setting(DEFAULTS["test_images"], "photos of each test person", min=1),
             "train_male": setting(DEFAULTS["train_male"], "share of men among the train people", min=0, max=1),
             "test_male": setting(DEFAULTS["test_male"], "share of men among the test people", min=0, max=1)},
    splits=("train", "test"),
))
