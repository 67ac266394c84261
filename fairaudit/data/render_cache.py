"""Rendered images of the embedded datasets, drawn once and kept in the workspace.

The embedded image datasets (``synthetic-faces``, ``colored-digits``) draw
their images on request. :class:`RenderCache` keeps every drawn image as
``uint8`` in one memory-mapped file per split and set of drawing options
(``$FAIRAUDIT_HOME/cache/render/``), so any later pass over the same split, in
this process, another process or a DataLoader worker, reads the image back
instead of drawing it. The file holds the images followed by one "done" byte
per image; an image is written before its byte, so a reader never sees half an
image. Every image is returned as its ``uint8`` value divided by 255, the
first time too, so a pass gives the same tensors whether the image was drawn or
read. A split larger than :data:`MAX_BYTES` (or ``FAIRAUDIT_RENDER_CACHE=0``) is
drawn every time, with the same quantisation.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from fairaudit import workspace
from fairaudit.errors import FairauditError

__all__ = ["RenderCache", "quantise", "MAX_BYTES", "CACHE_ENV"]

CACHE_ENV = "FAIRAUDIT_RENDER_CACHE"
MAX_BYTES = 4 * 2**30  # a split's images above this size are not cached
VERSION = 1


def quantise(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """``[0, 1]`` floats to ``uint8`` (round to nearest), the storage of an 8-bit image."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def _as_float(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels.astype(np.float32)) / 255.0


class RenderCache:
    """The drawn images of one split: ``get(i, draw)`` returns image ``i`` as float32 in ``[0, 1]``.

    ``key`` is everything the drawing depends on (JSON-serialisable); ``shape`` is one image's ``(C, H, W)``;
    ``draw(i)`` draws image ``i`` as floats in ``[0, 1]``.
    """

    def __init__(self, name: str, key: dict[str, Any], n: int, shape: tuple[int, ...]):
        self.n, self.shape = int(n), tuple(int(d) for d in shape)
        self.image_bytes = math.prod(self.shape)
        digest = hashlib.sha256(json.dumps({**key, "n": self.n, "shape": self.shape, "version": VERSION},
                                           sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.file_name = f"{name}-{digest}.u8"
        self.enabled = os.environ.get(CACHE_ENV, "1") != "0" and self.n * (self.image_bytes + 1) <= MAX_BYTES
        self._map: np.memmap | None = None
        self._pid: int | None = None

    # The memory map is opened lazily and again after a fork (DataLoader workers), never pickled.
    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None, "_pid": None}

    @property
    def path(self) -> Path:
        return workspace.subdir("cache") / "render" / self.file_name

    def _open(self) -> np.memmap | None:
        if self._map is not None and self._pid == os.getpid():
            return self._map
        try:
            path = self.path
            path.parent.mkdir(parents=True, exist_ok=True)
            size = self.n * (self.image_bytes + 1)
            if not path.exists() or path.stat().st_size != size:
                _create(path, size)
            self._map, self._pid = np.memmap(path, dtype=np.uint8, mode="r+", shape=(size,)), os.getpid()
        except (OSError, FairauditError):  # no usable workspace (read-only, full, a file): draw every time
            self.enabled = False
            return None
        return self._map

    def get(self, i: int, draw: Callable[[int], np.ndarray | torch.Tensor]) -> torch.Tensor:
        i = int(i)
        mm = self._open() if self.enabled else None
        if mm is None:
            return _as_float(quantise(draw(i)).reshape(self.shape))
        done = self.n * self.image_bytes + i
        start = i * self.image_bytes
        if mm[done]:
            return _as_float(np.array(mm[start:start + self.image_bytes]).reshape(self.shape))
        pixels = quantise(draw(i)).reshape(self.shape)
        mm[start:start + self.image_bytes] = pixels.reshape(-1)
        mm[done] = 1  # after the image: a reader that sees the byte sees the whole image
        return _as_float(pixels)

    def cached(self) -> int:
        """How many images of the split are in the cache."""
        mm = self._open() if self.enabled else None
        return 0 if mm is None else int(np.count_nonzero(mm[self.n * self.image_bytes:]))


def _create(path: Path, size: int) -> None:
    """A zero-filled (sparse) file of ``size`` bytes at ``path``, created atomically; an existing one wins."""
    fd, tmp = tempfile.mkstemp(prefix=".render-", dir=path.parent)
    try:
        os.ftruncate(fd, size)
        os.close(fd)
        fd = None
        if path.exists() and path.stat().st_size != size:  # left by an interrupted older version: replace it
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # fails if another process created it first
        except FileExistsError:
            pass
    finally:
        if fd is not None:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
