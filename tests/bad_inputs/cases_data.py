"""Broken or misleading data: predictions tables, manifests, output paths and devices.

The builders are shared with the unit tests (``tests/test_audit_engine.py``,
``tests/test_datasets.py``), which check the same files at the library level.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from tests.bad_inputs import BadInput

N_ROWS = 200
HOSTILE_GROUP = "=cmd|' /C calc'!A0"


# ---------------------------------------------------------------------------- predictions tables

def predictions_frame(n: int = N_ROWS, seed: int = 0) -> pd.DataFrame:
    """A perfect predictor (``pred == y``) with unrelated scores, two groups of ``n / 2`` and a continuous ``age``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return pd.DataFrame({"y": y, "pred": y, "score": rng.uniform(0, 1, n).round(4),
                         "sex": np.tile(["f", "m"], n // 2), "age": rng.uniform(18, 80, n).round(2)})


def write_predictions(folder: Path, frame: pd.DataFrame | None = None, name: str = "preds.csv", **columns) -> Path:
    """Write ``frame`` (default :func:`predictions_frame`) with ``columns`` replaced; return the CSV's path."""
    frame = (predictions_frame() if frame is None else frame).copy()
    for column, values in columns.items():
        frame[column] = values
    path = Path(folder) / name
    frame.to_csv(path, index=False)
    return path


def predictions_args(path: Path, *extra: str, sensitive: str = "sex", json_out: Path | None = None) -> list[str]:
    return ["audit-predictions", str(path), "--label", "y", "--pred", "pred", "--sensitive", sensitive,
            "--bootstrap", "0", "--json", str(json_out or Path(path).parent / "audit.json"), *extra]


def header_only(sandbox: Path) -> list[str]:
    path = sandbox / "empty.csv"
    path.write_text("y,pred,score,sex\n")
    return predictions_args(path)


def mismatched_labels(sandbox: Path) -> list[str]:
    frame = predictions_frame()
    return predictions_args(write_predictions(sandbox, pred=np.where(frame["y"] == 1, "yes", "no")))


def one_group(sandbox: Path) -> list[str]:
    return predictions_args(write_predictions(sandbox, sex="f"))


def one_row_group(sandbox: Path) -> list[str]:
    sex = predictions_frame()["sex"].to_numpy().copy()
    sex[0] = "x"
    return predictions_args(write_predictions(sandbox, sex=sex))


def continuous_group(sandbox: Path) -> list[str]:
    return predictions_args(write_predictions(sandbox), sensitive="age")


def json_is_folder(sandbox: Path) -> list[str]:
    (sandbox / "out.json").mkdir()
    return predictions_args(write_predictions(sandbox), json_out=sandbox / "out.json")


def unknown_device(command: str):
    def build(sandbox: Path) -> list[str]:
        if command == "audit-predictions":
            return predictions_args(write_predictions(sandbox), "--device", "tpu")
        out = ["--out" if command == "train" else "--json", str(sandbox / "out")]
        if command in ("report", "leakage"):
            return [command, "0123456789ab", "--device", "tpu", *out]
        return [command, *(["faap"] if command in ("mitigate", "sweep") else []), "--dataset", "adult",
                "--device", "tpu", *out]
    return build


# ---------------------------------------------------------------------------- manifests

def write_manifest(folder: Path, n: int = 12, size: int = 8, **columns) -> Path:
    """``n`` tiny PNGs and a ``manifest.csv`` (``path,label,group``) in ``folder``; ``columns`` replace columns."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    frame = pd.DataFrame({"path": [f"img{i}.png" for i in range(n)], "label": np.arange(n) % 2,
                          "group": np.where(np.arange(n) % 3 == 0, "a", "b")})
    for column, values in columns.items():
        frame[column] = values
    frame.to_csv(folder / "manifest.csv", index=False)
    return folder


def write_huge_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A PNG whose header declares ``width × height`` pixels (the pixel data is a few bytes, never decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def tiny_checkpoint(folder: Path, size: int = 16) -> Path:
    """An untrained ``small_cnn`` for 2 classes of ``3 × size × size`` images, with its sidecar."""
    from fairaudit.models import build_model
    from fairaudit.models.io import save_checkpoint

    return save_checkpoint(build_model("small_cnn", 2, (3, size, size)), Path(folder) / "model.safetensors")


def manifest_audit_args(sandbox: Path, data_dir: Path, *options: str) -> list[str]:
    args = ["audit", "--dataset", "manifest", "--data-dir", str(data_dir), "--model",
            str(tiny_checkpoint(sandbox)), "--bootstrap", "0", "--device", "cpu", "--data-opt", "image_size=16",
            "--data-opt", "split_column=split", "--json", str(sandbox / "audit.json")]
    for option in options:
        args += ["--data-opt", option]
    return args


def all_test(n: int = 12) -> list[str]:
    return ["test"] * n


def manifest_header_only(sandbox: Path) -> list[str]:
    data = sandbox / "images"
    data.mkdir()
    (data / "manifest.csv").write_text("path,label,group,split\n")
    return manifest_audit_args(sandbox, data)


def decompression_bomb(sandbox: Path) -> list[str]:
    data = write_manifest(sandbox / "images", split=all_test())
    write_huge_png(data / "img3.png")
    return manifest_audit_args(sandbox, data)


def nan_label(sandbox: Path) -> list[str]:
    label = (np.arange(12) % 2).astype(float)
    label[4] = np.nan
    return manifest_audit_args(sandbox, write_manifest(sandbox / "images", label=label, split=all_test()))


def escaping_path(sandbox: Path) -> list[str]:
    outside = write_manifest(sandbox / "elsewhere")
    paths = [f"img{i}.png" for i in range(12)]
    paths[5] = str(Path("..") / outside.name / "img5.png")
    data = write_manifest(sandbox / "images", path=paths, split=all_test())
    return manifest_audit_args(sandbox, data, "contained=true")


def upload_manifest(sandbox: Path) -> None:
    """The app's path: stage ``images/manifest.csv`` with ``images`` as the image folder, load it, read every image."""
    from fairaudit.data import load_dataset
    from appkit.uploads import stage_manifest

    images = sandbox / "images"
    staged = stage_manifest((images / "manifest.csv").read_bytes(), "manifest.csv", str(images))
    dataset = load_dataset("manifest", "test", data_dir=staged, split_column="split", image_size=16)
    for i in range(len(dataset)):
        dataset[i]


CASES = [
    BadInput("predictions_header_only", header_only, "has a header but no rows"),
    BadInput("predictions_mismatched_labels", mismatched_labels, "holds {0, 1} but the prediction column 'pred' "
                                                                 "holds {'no', 'yes'}"),
    BadInput("predictions_one_group", one_group, "nothing to compare"),
    BadInput("predictions_one_row_group", one_row_group, "'sex=x' has 1 sample(s), fewer than min_group_size=10"),
    BadInput("predictions_continuous_group", continuous_group, "bin it"),
    BadInput("predictions_json_is_folder", json_is_folder, "is a folder"),
    *[BadInput(f"device_tpu_{command.replace('-', '_')}", unknown_device(command),
               "unsupported device 'tpu'; use auto, cpu, cuda or cuda:N")
      for command in ("audit-predictions", "audit", "robustness", "train", "mitigate", "sweep", "report",
                      "leakage")],
    BadInput("manifest_header_only", manifest_header_only, "has a header but no rows", upload=upload_manifest),
    BadInput("manifest_decompression_bomb", decompression_bomb, "has 400,000,000 pixels", upload=upload_manifest),
    BadInput("manifest_nan_label", nan_label, "manifest column 'label' cannot be used: it has no value on line 6",
             upload=upload_manifest),
    BadInput("manifest_path_escapes_contained_root", escaping_path, "lies outside", upload=upload_manifest),
]
