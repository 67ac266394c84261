"""Imports of the packages behind optional paths (UMAP maps, Grad-CAM / Integrated Gradients, the Ray backend).

Each is declared in ``pyproject.toml``; a broken or partial environment gets one sentence saying what to
install instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from fairaudit.errors import FairauditError

# Import name -> the distribution to install, where the two differ or the package backs an optional path.
PACKAGES = {"umap": "umap-learn", "openTSNE": "openTSNE", "captum": "captum", "fairlearn": "fairlearn",
            "ray": "ray"}


class MissingPackageError(FairauditError):
    """A package an optional path needs cannot be imported."""


def require(module: str, what: str) -> ModuleType:
    """``import module`` for ``what`` (e.g. "UMAP maps"), or a :class:`MissingPackageError` saying what to
    install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        package = PACKAGES.get(top, top)
        raise MissingPackageError(
            f"the Python package '{package}' needed for {what} cannot be imported ({exc}); install it with "
            f"`pip install {package}` (or `pip install -r requirements.txt`) and try again.") from None
