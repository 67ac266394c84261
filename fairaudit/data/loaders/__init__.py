"""Loaders for datasets read from a user-given folder (``embedded=False``).

Importing :mod:`fairaudit.data.folders` imports every module here, and each
module registers its dataset at import.
"""
