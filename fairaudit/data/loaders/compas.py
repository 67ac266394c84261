"""COMPAS two-year recidivism (ProPublica, Broward County), read from ``data_dir``.

``data_dir`` must contain ``compas-scores-two-years.csv`` (or ``.csv.gz``).
Rows are filtered as in ProPublica's analysis: ``days_b_screening_arrest``
within ±30 days, ``is_recid != -1``, ``c_charge_degree != 'O'`` and a
``score_text`` (6,172 of 7,214 rows of the public file remain), then split
70/30 at random with ``seed`` (FRoC seed paper, §4).

Features (the nine attributes of the FRoC paper's Table 1): ``age``,
``priors_count`` and the three juvenile counts (standardised), ``age_cat``
and ``c_charge_degree`` (one-hot), plus ``sex`` and ``race`` only when
``include_sensitive=True`` – by default the protected attributes are kept out
of the model input, as in the paper. Encoders are fitted on the train split.

Target ``two_year_recid``: 1 = re-offended within two years. The
**favourable outcome is 0** (``dataset.favorable_label == 0``).
Attributes: ``race`` (all categories of the file, alphabetical),
``race_binary`` (0 non-Caucasian, 1 Caucasian; with ``two_races=True`` only
African-American and Caucasian defendants are kept and code 0 is
African-American), ``sex`` (0 Female, 1 Male) and ``age_group`` (``age_cat``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from fairaudit.data.loaders.common import code_values, first_existing, read_csv, require_columns
from fairaudit.data.registry import DatasetSpec, register_dataset
from fairaudit.data.tabular import TabularFairDataset, encode_train_test
from fairaudit.errors import DatasetError
from fairaudit.options import setting

FILE_NAMES = ["compas-scores-two-years.csv", "compas-scores-two-years.csv.gz"]
NUMERIC = ["age", "priors_count", "juv_fel_count", "juv_misd_count", "juv_other_count"]
CATEGORICAL = ["age_cat", "c_charge_degree", "race", "sex"]
SENSITIVE_COLUMNS = ("race", "sex")
FILTER_COLUMNS = ["days_b_screening_arrest", "is_recid", "c_charge_degree", "score_text"]
AGE_CATS = ["Less than 25", "25 - 45", "Greater than 45"]
TARGET_NAMES = ["no recidivism", "recidivism"]
TEST_FRACTION = 0.3


def filter_records(frame: pd.DataFrame) -> pd.DataFrame:
    """ProPublica's filtering of the two-year file."""
    keep = (frame["days_b_screening_arrest"].between(-30, 30) & (frame["is_recid"] != -1)
            & (frame["c_charge_degree"] != "O") & frame["score_text"].notna() & (frame["score_text"] != "N/A"))
    return frame[keep].reset_index(drop=True)


@lru_cache(maxsize=4)
def load_records(path: str, mtime_ns: int) -> pd.DataFrame:
    frame = read_csv(Path(path), low_memory=False)
    require_columns(frame, [*NUMERIC, *CATEGORICAL, *FILTER_COLUMNS, "two_year_recid"], Path(path).name)
    records = filter_records(frame)
    used = [*NUMERIC, *CATEGORICAL, "two_year_recid"]
    if records[used].isna().any().any():
        column = records[used].columns[records[used].isna().any()][0]
        raise DatasetError(f"column '{column}' of '{Path(path).name}' has missing values after filtering.")
    if records.empty:
        raise DatasetError(f"no row of '{Path(path).name}' passes the ProPublica filter.")
    return records


def attribute_table(records: pd.DataFrame, two_races: bool) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    source = "the COMPAS file"
    target, target_names = code_values(records["two_year_recid"].astype(int), [0, 1],
                                       f"column 'two_year_recid' of {source}")
    sex, sex_names = code_values(records["sex"], ["Female", "Male"], f"column 'sex' of {source}")
    race, race_names = code_values(records["race"], None, f"column 'race' of {source}")
    age_group, age_names = code_values(records["age_cat"], AGE_CATS, f"column 'age_cat' of {source}")
    table = pd.DataFrame({"two_year_recid": target, "race": race,
                          "race_binary": (records["race"] == "Caucasian").to_numpy(dtype=np.int64),
                          "sex": sex, "age_group": age_group})
    names = {"two_year_recid": TARGET_NAMES, "race": race_names,
             "race_binary": ["African-American" if two_races else "non-Caucasian", "Caucasian"],
             "sex": sex_names, "age_group": age_names}
    return table, names


@lru_cache(maxsize=8)
def _encoded(path: str, mtime_ns: int, seed: int, include_sensitive: bool, two_races: bool):
    records = load_records(path, mtime_ns)
    if two_races:
        records = records[records["race"].isin(["African-American", "Caucasian"])].reset_index(drop=True)
    table, names = attribute_table(records, two_races)
    categorical = [c for c in CATEGORICAL if include_sensitive or c not in SENSITIVE_COLUMNS]
    splits, encoder = encode_train_test(records, table, NUMERIC, categorical, TEST_FRACTION, seed)
    return splits, names, encoder


def build_compas(split: str = "test", data_dir: str | Path | None = None, seed: int = 0,
                 include_sensitive: bool = False, two_races: bool = False) -> TabularFairDataset:
    path = first_existing(Path(data_dir), FILE_NAMES, "the ProPublica COMPAS file")
    splits, names, encoder = _encoded(str(path.resolve()), path.stat().st_mtime_ns, int(seed),
                                      bool(include_sensitive), bool(two_races))
    x, table = splits[split]
    return TabularFairDataset("compas", split, x, table, names, "two_year_recid", ["race_binary"], encoder,
                              favorable_label=0)


register_dataset(DatasetSpec(
    name="compas",
    builder=build_compas,
    kind="tabular",
    description="ProPublica COMPAS two-year recidivism (filtered as ProPublica, seeded 70/30 split).",
    default_target="two_year_recid",
    default_sensitive=["race_binary"],
    embedded=False,
    options={"seed": setting(0, "seed of the random train/val/test division", min=0),
             "include_sensitive": setting(False, "keep the sensitive columns among the model's input features"),
             "two_races": setting(False, "keep only African-American and Caucasian defendants (race_binary 0 is then African-American)")},
    splits=("train", "test"),
))
