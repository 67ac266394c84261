"""Models: builders registry, the ``g``/``f`` split, safe loading and saving."""

from fairaudit.models.io import (ScriptedModel, features_available, load_model, model_summary, read_sidecar,
                                 save_checkpoint)
from fairaudit.models.registry import MODEL_BUILDERS, build_model, default_arch, list_models, register_model
from fairaudit.models.split import SplitModel, split_torchvision
from fairaudit.models.upload import load_model_bytes

__all__ = ["MODEL_BUILDERS", "build_model", "default_arch", "list_models", "register_model", "SplitModel",
           "split_torchvision", "save_checkpoint", "load_model", "load_model_bytes", "read_sidecar",
           "model_summary", "features_available", "ScriptedModel"]
