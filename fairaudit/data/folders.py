"""Registers the datasets read from a user-given folder (``--data-dir``).

Each loader lives in :mod:`fairaudit.data.loaders` and registers itself at
import: ``celeba``, ``utkface``, ``fairface``, ``cifar10s``, ``compas`` and
``manifest`` (any images listed in a CSV).
"""

from fairaudit.data.loaders import celeba, cifar10s, compas, fairface, manifest, utkface  # noqa: F401
