"""Registers the datasets that ship with fairaudit (no download needed)."""

from fairaudit.data import adult, colored_digits, synthetic_faces, synthetic_identities  # noqa: F401
