"""UCI Adult (Census Income, 1994), shipped in ``assets/adult/`` (CC BY 4.0).

Preprocessing follows the FRoC seed paper (§4, Table 1):

* rows with a missing value (``?``) are dropped, leaving 45,222 of 48,842;
* the official train and test files are pooled and re-split at random
  70/30 with ``seed``;
* numeric columns are standardised and categorical columns one-hot encoded,
  both fitted on the training split only;
* the protected attributes ``sex`` and ``race`` are **excluded from the
  model input** by default, as in the paper (``include_sensitive=True`` adds
  them back as one-hot features).

Target ``income``: 0 ``<=50K``, 1 ``>50K`` (favourable, about 25 % of rows).
Attributes usable as target or sensitive attribute:

* ``sex`` – 0 Female (protected in the paper), 1 Male;
* ``race`` – the five census categories, in alphabetical order;
* ``race_binary`` – 0 non-White (protected in the paper), 1 White;
* ``age_group`` – 0 ``<25``, 1 ``25-60``, 2 ``>60`` (age stays a feature).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from fairaudit.options import setting
from fairaudit.data.loaders.common import code_values, first_existing, read_csv
from fairaudit.data.registry import DatasetSpec, register_dataset
from fairaudit.data.tabular import TabularFairDataset, encode_train_test
from fairaudit.errors import DatasetError

ASSET_DIR = Path(__file__).resolve().parents[2] / "assets" / "adult"

COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
           "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country",
           "income"]
NUMERIC = ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
CATEGORICAL = ["workclass", "education", "marital_status", "occupation", "relationship", "race", "sex",
               "native_country"]
SENSITIVE_COLUMNS = ("race", "sex")
INCOME_VALUES = ["<=50K", ">50K"]
AGE_GROUPS = ["<25", "25-60", ">60"]
TEST_FRACTION = 0.3


def _read_file(folder: Path, stem: str) -> pd.DataFrame:
    path = first_existing(folder, [f"{stem}.gz", stem], f"the Adult file {stem}")
    # ``|`` starts the comment line at the top of adult.test.
    frame = read_csv(path, header=None, names=COLUMNS, skipinitialspace=True, na_values="?", comment="|")
    if frame.shape[1] != len(COLUMNS) or frame["income"].isna().all():
        raise DatasetError(f"'{path}' does not look like a UCI Adult file (15 comma-separated columns).")
    return frame


@lru_cache(maxsize=4)
def load_records(folder: str) -> pd.DataFrame:
    """All complete Adult records of ``adult.data`` followed by ``adult.test`` (raw values)."""
    frame = pd.concat([_read_file(Path(folder), "adult.data"), _read_file(Path(folder), "adult.test")],
                      ignore_index=True)
    frame = frame.dropna().reset_index(drop=True)
    # The test file writes its labels with a trailing period (">50K.").
    frame["income"] = frame["income"].str.rstrip(".")
    return frame


def attribute_table(records: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Integer-coded label and attribute columns for ``records``."""
    income, income_names = code_values(records["income"], INCOME_VALUES, "Adult column 'income'")
    sex, sex_names = code_values(records["sex"], ["Female", "Male"], "Adult column 'sex'")
    race, race_names = code_values(records["race"], None, "Adult column 'race'")
    race_binary = (records["race"] == "White").to_numpy(dtype=np.int64)
    age_group = np.digitize(records["age"].to_numpy(), [25, 61])
    table = pd.DataFrame({"income": income, "sex": sex, "race": race, "race_binary": race_binary,
                          "age_group": age_group})
    names = {"income": income_names, "sex": sex_names, "race": race_names,
             "race_binary": ["non-White", "White"], "age_group": AGE_GROUPS}
    return table, names


@lru_cache(maxsize=8)
def _encoded(folder: str, seed: int, include_sensitive: bool):
    records = load_records(folder)
    table, names = attribute_table(records)
    categorical = [c for c in CATEGORICAL if include_sensitive or c not in SENSITIVE_COLUMNS]
    splits, encoder = encode_train_test(records, table, NUMERIC, categorical, TEST_FRACTION, seed)
    return splits, names, encoder


def build_adult(split: str = "test", data_dir: str | Path | None = None, seed: int = 0,
                include_sensitive: bool = False) -> TabularFairDataset:
    """One split of Adult; ``data_dir`` may point to another copy of the UCI files."""
    folder = Path(data_dir) if data_dir is not None else ASSET_DIR
    splits, names, encoder = _encoded(str(folder.resolve()), int(seed), bool(include_sensitive))
    x, table = splits[split]
    return TabularFairDataset("adult", split, x, table, names, "income", ["sex"], encoder, favorable_label=1)


register_dataset(DatasetSpec(
    name="adult",
    builder=build_adult,
    kind="tabular",
    description="UCI Adult census income (45,222 complete records, seeded 70/30 split); predict income >50K.",
    default_target="income",
    default_sensitive=["sex"],
    embedded=True,
    options={"seed": setting(0, "seed of the random draws that build the data", min=0),
             "include_sensitive": setting(False, "keep the sensitive columns among the model's input features")},
    splits=("train", "test"),
))
