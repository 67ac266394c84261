"""Registers the datasets read from a user-given folder (``--data-dir``).

Each loader lives in :mod:`fairaudit.data.loaders` and registers itself at
import: ``celeba``, ``utkface``, ``fairface``, ``cifar10s``, ``compas``,
``manifest`` (any images listed in a CSV) and ``identity-folders`` (one folder per person).
"""

from fairaudit.data.loaders import celeba, cifar10s, compas, fairface, identity_folders, manifest, utkface  # noqa: F401
