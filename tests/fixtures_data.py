"""Tiny on-disk copies of each folder dataset's format, written into a temporary folder."""

from __future__ import annotations

import builtins
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

CELEBA_ATTRIBUTES = [
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young",
]


def write_image(path: Path, rng: np.random.Generator, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def make_celeba(root: Path, partitions=(0, 0, 0, 0, 1, 1, 2, 2, 2), seed: int = 0) -> np.ndarray:
    """CelebA layout; returns the -1/1 attribute matrix written (one row per image)."""
    rng = np.random.default_rng(seed)
    files = [f"{k + 1:06d}.jpg" for k in range(len(partitions))]
    values = rng.choice([-1, 1], size=(len(files), 40))
    for f in files:
        write_image(root / "img_align_celeba" / f, rng)
    lines = [str(len(files)), " ".join(CELEBA_ATTRIBUTES)]
    # The real file pads positive values with an extra space: "000001.jpg -1  1  1 ...".
    lines += [f + " " + " ".join(f"{v:2d}" for v in row) for f, row in zip(files, values)]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text("".join(f"{f} {p}\n" for f, p in zip(files, partitions)))
    return values


UTK_VALID = [  # (file name, age, gender, race)
    ("25_0_0_20170116174525125.jpg.chip.jpg", 25, 0, 0),
    ("3_1_2_20161219140530307.jpg.chip.jpg", 3, 1, 2),
    ("61_1_1_20170109142408075.jpg.chip.jpg", 61, 1, 1),
    ("45_0_3_20170119180000000.jpg", 45, 0, 3),
    ("19_1_4_20170103230012345.jpg.chip.jpg", 19, 1, 4),
    ("33_0_1_20170104000000001.jpg.chip.jpg", 33, 0, 1),
    ("70_1_0_20170104000000002.jpg.chip.jpg", 70, 1, 0),
    ("40_0_2_20170104000000003.jpg.chip.jpg", 40, 0, 2),
    ("8_1_3_20170104000000004.jpg.chip.jpg", 8, 1, 3),
    ("52_0_4_20170104000000005.jpg.chip.jpg", 52, 0, 4),
]
UTK_MALFORMED = ["39_1_20170116174525125.jpg.chip.jpg", "61_3_20170109150557335.jpg.chip.jpg",
                 "24_0_7_20170104000000000.jpg.chip.jpg"]


def make_utkface(root: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for k, (name, *_rest) in enumerate(UTK_VALID):
        write_image(root / ("part2" if k % 3 == 0 else "part1") / name, rng)
    for name in UTK_MALFORMED:
        write_image(root / "part1" / name, rng)
    (root / "part1" / "README.txt").write_text("not an image")


FAIRFACE_ROWS = {
    "train": [("train/1.jpg", "50-59", "Male", "East Asian"), ("train/2.jpg", "30-39", "Female", "Indian"),
              ("train/3.jpg", "3-9", "Female", "Black"), ("train/4.jpg", "more than 70", "Male", "White"),
              ("train/5.jpg", "0-2", "Male", "Middle Eastern")],
    "val": [("val/1.jpg", "20-29", "Female", "Latino_Hispanic"), ("val/2.jpg", "10-19", "Male", "Southeast Asian"),
            ("val/3.jpg", "60-69", "Female", "White")],
}


def make_fairface(root: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for split, rows in FAIRFACE_ROWS.items():
        frame = pd.DataFrame(rows, columns=["file", "age", "gender", "race"])
        frame["service_test"] = [True, False] * (len(rows) // 2) + [True] * (len(rows) % 2)
        frame.to_csv(root / f"fairface_label_{split}.csv", index=False)
        for f in frame["file"]:
            write_image(root / f, rng)


def cifar_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"fixture", b"labels": [int(k % 10) for k in range(n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{k}.png".encode() for k in range(n)]}


def make_cifar(root: Path, per_batch: int = 40, test_size: int = 30) -> dict[str, dict]:
    """CIFAR-10 python batches (protocol 2 for train like the original, 5 for test); returns them."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {f"data_batch_{k}": cifar_batch(per_batch, k) for k in range(1, 6)}
    batches["test_batch"] = cifar_batch(test_size, 99)
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=5 if name == "test_batch" else 2))
    return batches


class _WriteMarker:
    """Unpickling this object calls exec(), which writes a marker file: a stand-in for any payload."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').write('executed')",)


def malicious_pickle(marker: Path) -> bytes:
    return pickle.dumps({b"data": _WriteMarker(marker), b"labels": [0]}, protocol=2)


COMPAS_COLUMNS = [
    "id", "name", "first", "last", "compas_screening_date", "sex", "dob", "age", "age_cat", "race",
    "juv_fel_count", "decile_score", "juv_misd_count", "juv_other_count", "priors_count",
    "days_b_screening_arrest", "c_jail_in", "c_jail_out", "c_case_number", "c_offense_date", "c_arrest_date",
    "c_days_from_compas", "c_charge_degree", "c_charge_desc", "is_recid", "r_case_number", "r_charge_degree",
    "r_days_from_arrest", "r_offense_date", "r_charge_desc", "r_jail_in", "r_jail_out", "violent_recid",
    "is_violent_recid", "vr_case_number", "vr_charge_degree", "vr_offense_date", "vr_charge_desc",
    "type_of_assessment", "decile_score", "score_text", "screening_date", "v_type_of_assessment", "v_decile_score",
    "v_score_text", "v_screening_date", "in_custody", "out_custody", "priors_count", "start", "end", "event",
    "two_year_recid",
]
COMPAS_RACES = ["African-American", "Caucasian", "Hispanic", "Other", "Asian", "Native American"]


def make_compas(root: Path, n: int = 40, seed: int = 0, gzip: bool = False) -> pd.DataFrame:
    """A COMPAS-format file of ``n`` kept rows plus four rows each failing one ProPublica filter."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n + 4):
        age = int(rng.integers(18, 70))
        row = dict.fromkeys(COMPAS_COLUMNS, "")
        row.update(id=k + 1, name=f"person {k}", sex=["Male", "Female"][k % 2], age=age,
                   age_cat="Less than 25" if age < 25 else "25 - 45" if age <= 45 else "Greater than 45",
                   race=COMPAS_RACES[k % len(COMPAS_RACES)], juv_fel_count=int(rng.integers(0, 2)),
                   juv_misd_count=int(rng.integers(0, 2)), juv_other_count=0, priors_count=int(rng.integers(0, 9)),
                   days_b_screening_arrest=int(rng.integers(-30, 31)), c_charge_degree=["F", "M"][k % 3 == 0],
                   is_recid=int(rng.integers(0, 2)), score_text=["Low", "Medium", "High"][k % 3],
                   two_year_recid=int(rng.integers(0, 2)), decile_score=int(rng.integers(1, 11)))
        rows.append(row)
    rows[n]["days_b_screening_arrest"] = 45
    rows[n + 1]["is_recid"] = -1
    rows[n + 2]["c_charge_degree"] = "O"
    rows[n + 3]["score_text"] = "N/A"
    # Selecting by the real header repeats two columns (decile_score, priors_count), as in the real file.
    frame = pd.DataFrame(rows)[COMPAS_COLUMNS]
    name = "compas-scores-two-years.csv" + (".gz" if gzip else "")
    frame.to_csv(root / name, index=False)
    return frame.iloc[:n]


def make_manifest(root: Path, n: int = 10, seed: int = 0, with_split: bool = False) -> pd.DataFrame:
    """Images in nested folders plus ``manifest.csv`` (label, group, skin, and ``age`` with a gap)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "path": [f"imgs/{k % 2}/{k}.png" for k in range(n)],
        "label": [["dog", "cat"][k % 2] for k in range(n)],
        "group": [["young", "old", "middle"][k % 3] for k in range(n)],
        "skin": [[3, 1][k % 2] for k in range(n)],
        "age": [None] + [20 + k for k in range(1, n)],
    })
    if with_split:
        frame["split"] = [["train", "Train", "val", "test", "valid"][k % 5] for k in range(n)]
    for p in frame["path"]:
        write_image(root / p, rng)
    frame.to_csv(root / "manifest.csv", index=False)
    return frame
