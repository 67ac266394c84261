"""Datasets: one registry, lazily decoded samples ``(x, y, s, index)``."""

from fairaudit.data.base import FairDataset, TensorFairDataset
from fairaudit.data.registry import DATASETS, DatasetSpec, get_spec, list_datasets, load_dataset, register_dataset

__all__ = ["FairDataset", "TensorFairDataset", "DATASETS", "DatasetSpec", "get_spec", "list_datasets",
           "load_dataset", "register_dataset"]
