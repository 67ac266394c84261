"""Models: builders registry, the ``g``/``f`` split, safe loading and saving."""

from fairaudit.models.registry import MODEL_BUILDERS, build_model, default_arch, list_models, register_model
from fairaudit.models.split import SplitModel, split_torchvision

__all__ = ["MODEL_BUILDERS", "build_model", "default_arch", "list_models", "register_model", "SplitModel",
           "split_torchvision"]
