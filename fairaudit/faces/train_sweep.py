"""Training-composition sweeps: how the make-up of the *training* people moves per-group recognition.

:func:`training_sweep` trains the demo face-recognition recipe (:data:`fairaudit.faces.demo.FACE_RECIPE`:
``face_small_cnn``, CosFace) once per training mix and seed on ``synthetic-identities``' train people and audits
every model on the same test people (disjoint from training, balanced unless the test options say otherwise):

* ``kind="ids"``: the share of men among the training *identities* goes through ``mixes`` (0:10 … 10:0 women
  to men by default: 0, 0.25, 0.5, 0.75, 1), with the number of training identities and photos per person fixed;
* ``kind="images"``: half the training identities are men and half women, every person keeps at least one
  photo, and the men's share of the training *photos* goes through ``mixes`` (1:9 … 9:1 by default): with 10
  photos per person, at share 0.3 every man keeps 3 photos and every woman 7.

Each seed trains with another initialisation and data order (and, for ``images``, keeps other photos); the
test people stay the same. Per mix and group the result holds the leave-one-out rank-1 (mean and standard
deviation over seeds) and the false non-match rate at one global threshold for the target false-match rate.
The sweep trains ``len(mixes) × len(seeds)`` models, so at the demo's scale (200 people, 10 epochs) it takes
minutes: the app runs it in the background.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch

from fairaudit.errors import FairauditError

__all__ = ["ID_MIXES", "IMAGE_MIXES", "training_sweep"]

ID_MIXES = (0.0, 0.25, 0.5, 0.75, 1.0)  # the men's share of the training identities (0:10 … 10:0)
IMAGE_MIXES = (0.1, 0.3, 0.5, 0.7, 0.9)  # the men's share of the training photos (1:9 … 9:1), identities balanced


class PhotoSubset(torch.utils.data.Dataset):
    """Some photos of a dataset of people, keeping its identities, target and input shape (for training)."""

    def __init__(self, base, rows: np.ndarray):
        self.base, self.rows = base, np.asarray(rows, dtype=np.int64)
        self.name, self.split, self.target = base.name, base.split, base.target
        self.num_classes, self.input_shape = base.num_classes, base.input_shape

    @property
    def identities(self) -> np.ndarray:
        return self.base.identities[self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        return self.base[int(self.rows[i])]


def _check(kind: str, mixes: Sequence[float], seeds: Sequence[int], train_images: int) -> tuple[float, ...]:
    if kind not in ("ids", "images"):
        raise FairauditError(f"unknown training sweep '{kind}'; use ids or images.")
    mixes = tuple(float(m) for m in mixes)
    if len(mixes) < 2:
        raise FairauditError("a training sweep needs at least two mixes, e.g. 0,0.5,1.")
    if not len(seeds):
        raise FairauditError("a training sweep needs at least one seed.")
    if kind == "ids" and any(not 0.0 <= m <= 1.0 for m in mixes):
        raise FairauditError("the men's share of the training identities must lie between 0 and 1.")
    if kind == "images":
        if any(not 0.0 < m < 1.0 for m in mixes):
            raise FairauditError("the men's share of the training photos must lie strictly between 0 and 1: "
                                 "every person keeps at least one photo.")
        for m in mixes:
            men = int(round(m * train_images))
            if men < 1 or train_images - men < 1:
                raise FairauditError(f"with {train_images} training photos per person, a men's share of {m:g} "
                                     "leaves one group without photos; use shares nearer 0.5 or more photos.")
    return mixes


def _train_split(kind: str, mix: float, seed: int, options: dict[str, Any]):
    """The training photos of one mix: a whole split (``ids``) or a photo subset of a balanced one (``images``)."""
    from fairaudit.data import load_dataset

    if kind == "ids":
        ds = load_dataset("synthetic-identities", "train", **{**options, "train_male": mix})
        return ds, ds
    ds = load_dataset("synthetic-identities", "train", **{**options, "train_male": 0.5})
    per_person = ds.images_per_id
    men = int(round(mix * per_person))
    male = ds.identity_attributes()["Male"].to_numpy()
    rng = np.random.default_rng([int(seed), 29])
    rows = []
    for person in range(ds.num_classes):
        own = np.flatnonzero(ds.identities == person)
        keep = men if male[person] == 1 else per_person - men
        rows.append(np.sort(rng.choice(own, keep, replace=False)))
    return PhotoSubset(ds, np.concatenate(rows)), ds


def _composition(train, people) -> dict[str, dict[str, int]]:
    male = people.identity_attributes()["Male"].to_numpy()[train.identities]
    ids = train.identities
    return {name: {"identities": int(len(np.unique(ids[male == code]))), "images": int((male == code).sum())}
            for code, name in enumerate(("Female", "Male"))}


def training_sweep(kind: str = "ids", mixes: Sequence[float] | None = None, seeds: Sequence[int] = (0, 1, 2), *,
                   data_options: dict[str, Any] | None = None, sensitive: str = "Male", epochs: int | None = None,
                   fmr: float = 1e-3, device="auto", batch_size: int = 256,
                   progress: Callable[[float, str], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Train the demo recipe at every training mix and seed and audit each model per group (module docstring).

    ``data_options`` are ``synthetic-identities`` options (``n_train_ids``, ``train_images``, ``n_test_ids``,
    ``test_images``, ``test_male``, ``seed``, ``image_size``; ``train_male`` is what the ``ids`` sweep varies);
    ``epochs`` replaces the recipe's 10. ``progress(fraction, message)`` is told after every model.
    """
    from fairaudit.data import get_spec, load_dataset
    from fairaudit.data.registry import parse_options
    from fairaudit.demo import RECIPE_THREADS
    from fairaudit.device import resolve_device
    from fairaudit.faces.demo import FACE_RECIPE
    from fairaudit.faces.engine import embed_dataset, identify, verify
    from fairaudit.faces.model import train_embedder
    from fairaudit.train.loop import TrainConfig

    options = parse_options(get_spec("synthetic-identities"), dict(data_options or {}))
    options.pop("train_male", None)
    train_images = int(options.get("train_images", get_spec("synthetic-identities").options["train_images"]))
    mixes = _check(kind, mixes if mixes is not None else (ID_MIXES if kind == "ids" else IMAGE_MIXES), seeds,
                   train_images)
    recipe = FACE_RECIPE["config"]
    if epochs is not None and (isinstance(epochs, bool) or int(epochs) < 1):
        raise FairauditError(f"epochs must be a whole number ≥ 1, got {epochs!r}.")
    test = load_dataset("synthetic-identities", "test", sensitive=[sensitive], **options)
    names: list[str] | None = None
    rank1: dict[str, np.ndarray] = {}
    fnmr: dict[str, np.ndarray] = {}
    compositions = []
    total, done = len(mixes) * len(seeds), 0
    for i, mix in enumerate(mixes):
        for j, seed in enumerate(seeds):
            if should_stop is not None and should_stop():
                raise FairauditError("the training sweep was stopped.")
            train, people = _train_split(kind, mix, int(seed), options)
            if j == 0:
                compositions.append(_composition(train, people))
            config = TrainConfig(**{**recipe.to_dict(), "seed": int(seed),
                                    **({"epochs": int(epochs)} if epochs is not None else {})})
            threads = torch.get_num_threads()
            if resolve_device(device).type == "cpu":
                torch.set_num_threads(RECIPE_THREADS)  # as the demo model: the same weights on every machine
            try:
                model, _ = train_embedder(train, FACE_RECIPE["arch"], FACE_RECIPE["loss"], FACE_RECIPE["margin"],
                                          FACE_RECIPE["scale"], config, FACE_RECIPE["balanced"], device=device)
            finally:
                torch.set_num_threads(threads)
            emb = embed_dataset(model, test, device=device, batch_size=batch_size)
            ident = identify(emb, (1,), n_boot=0).summary
            ver = verify(emb, fmr, n_boot=0).summary
            if names is None:
                names = list(emb.group_names)
                rank1 = {g: np.full((len(mixes), len(seeds)), math.nan) for g in names}
                fnmr = {g: np.full((len(mixes), len(seeds)), math.nan) for g in names}
            for g in names:
                rank1[g][i, j] = _nan(ident["groups"][g]["rank1"])
                fnmr[g][i, j] = _nan(ver["groups"][g]["fnmr"])
            done += 1
            if progress is not None:
                progress(done / total, f"trained {done} of {total} models (men's share {mix:g}, seed {seed})")
    ddof = 1 if len(seeds) > 1 else 0
    return {"kind": kind, "varied_group": "Male", "share": list(mixes), "seeds": [int(s) for s in seeds],
            "sensitive": sensitive, "groups": names, "train": compositions,
            "test": {"identities": int(test.num_classes), "images": len(test)},
            "epochs": int(epochs if epochs is not None else recipe.epochs), "fmr": float(fmr),
            "rank1": {g: _means(r) for g, r in rank1.items()},
            "rank1_std": {g: [_num(x) for x in np.nanstd(r, 1, ddof=ddof)] for g, r in rank1.items()},
            "rank1_by_seed": {g: r.tolist() for g, r in rank1.items()},
            "fnmr": {g: _means(r) for g, r in fnmr.items()},
            "fnmr_std": {g: [_num(x) for x in np.nanstd(r, 1, ddof=ddof)] for g, r in fnmr.items()}}


def _nan(x) -> float:
    return math.nan if x is None else float(x)


def _num(x) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def _means(r: np.ndarray) -> list[float | None]:
    return [_num(np.nanmean(row)) if np.isfinite(row).any() else None for row in r]
