"""One seed fixes everything a run draws at random.

:func:`seed_everything` is called once at the start of every command that
trains or attacks (``train``, the demo model, each mitigation job) *before*
any model is built, so a seed fixes the weight initialisation, the data order,
the DataLoader workers, attack random starts, the methods' inner draws and the
bootstrap. Code that needs its own stream of random numbers asks
:func:`make_generator` for a ``torch.Generator`` derived from the seed and a
name, so adding a draw in one place never shifts the numbers drawn in another.

On the CPU the same command with the same seed gives bit-identical weights and
identical audit JSON: :func:`seed_everything` also turns on
``torch.use_deterministic_algorithms(True, warn_only=True)``. On CUDA, runs are
repeatable only up to floating-point noise: mixed precision, cuDNN's choice of
convolution algorithm and atomic additions (e.g. ``index_add_`` in the
bootstrap, the backward pass of some layers) do not fix the order of
floating-point sums, so the last digits of weights and metrics can differ
between two runs; :func:`run_metadata` records ``deterministic: false`` there.
"""

from __future__ import annotations

import hashlib
import platform
import random
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# torch and numpy are imported where they are used, so that importing this module (e.g. by the run
# registry) stays cheap.

__all__ = ["seed_everything", "make_generator", "derive_seed", "worker_init_fn", "is_deterministic",
           "library_versions", "run_metadata"]

_MAX_SEED = 2**63 - 1


def derive_seed(seed: int, *names: Any) -> int:
    """A 63-bit seed for the random stream ``names`` of run ``seed`` (the same for the same inputs)."""
    key = repr((int(seed), *map(str, names))).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & _MAX_SEED


def make_generator(seed: int, *names: Any, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded from ``seed`` and the stream's ``names``.

    Without names it is seeded with ``seed`` itself (as ``torch.Generator().manual_seed(seed)``).
    """
    import torch

    value = int(seed) if not names else derive_seed(seed, *names)
    return torch.Generator(device=torch.device(device)).manual_seed(value)


def seed_everything(seed: int, device: str | torch.device | None = None) -> torch.Generator:
    """Seed Python's, NumPy's and torch's global generators (CUDA included) with ``seed``.

    When ``device`` is a CPU device, deterministic algorithms are turned on
    (with a warning, not an error, for an operation that has no deterministic
    version). Returns a CPU generator seeded with ``seed`` for the caller's
    own draws.
    """
    import numpy as np
    import torch

    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device is not None and _device_type(device) == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    return make_generator(seed)


def worker_init_fn(worker_id: int) -> None:
    """Seed a DataLoader worker's Python and NumPy generators from its torch seed.

    The DataLoader derives each worker's torch seed from its own ``generator``
    (seeded by the run) and the worker id, so a worker that draws with NumPy or
    ``random`` draws the same numbers in every run.
    """
    import numpy as np
    import torch

    seed = torch.initial_seed()
    random.seed(seed)
    np.random.seed(seed % 2**32)


def is_deterministic(device: str | torch.device) -> bool:
    """Whether a run on ``device`` repeats bit for bit with the same seed (true on the CPU, see above)."""
    return _device_type(device) == "cpu"


def _device_type(device) -> str:
    return str(device).split(":")[0]


def library_versions() -> dict[str, str | None]:
    """Versions of Python, fairaudit and the libraries that decide the numbers."""
    import torch

    from fairaudit import __version__

    # torch.__version__ names the build too (e.g. "+cu130"), which the package metadata does not.
    versions: dict[str, str | None] = {"fairaudit": __version__, "python": platform.python_version(),
                                       "platform": platform.platform(), "torch": torch.__version__,
                                       "cuda": torch.version.cuda}
    for package in ("torchvision", "numpy", "pandas", "scikit-learn", "ray"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def run_metadata(seed: int, device: str | torch.device) -> dict[str, Any]:
    """``{"seed", "device", "deterministic", "versions"}``: what a result JSON records about how it was made."""
    return {"seed": int(seed), "device": str(device), "deterministic": is_deterministic(device),
            "versions": library_versions()}
