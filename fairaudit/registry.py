"""One registry type for everything fairaudit looks up by name: datasets, model architectures, mitigation
methods and explainers.

A :class:`Registry` is a read-only mapping ``name → object`` with three rules, as torchvision's model registry:

* registering a second, different object under a taken name raises (registering the same object again, e.g.
  when a module is imported twice, is allowed);
* looking up an unknown name raises the registry's error with one sentence that suggests the closest name;
* the listing order is the registration order.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from fairaudit.errors import FairauditError

T = TypeVar("T")

__all__ = ["Registry", "did_you_mean"]


def did_you_mean(name: str, choices) -> str:
    """`` (did you mean 'faap'?)`` for the closest of ``choices``, or an empty string when none is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _identity(obj: Any) -> Any:
    """What makes two registrations the same: a class or function by its qualified name, anything else by value."""
    if hasattr(obj, "__qualname__") and hasattr(obj, "__module__"):
        return (obj.__module__, obj.__qualname__)
    return obj


def _describe(obj: Any) -> str:
    identity = _identity(obj)
    return ".".join(identity) if isinstance(identity, tuple) else repr(obj)


class Registry(Mapping[str, T], Generic[T]):
    """Named objects of one kind (``kind`` names it in messages, e.g. ``"dataset"``).

    ``error`` is the :class:`~fairaudit.errors.FairauditError` subclass raised for an unknown or duplicate name;
    ``load`` (optional) is called once before the first lookup, to import the modules that register the
    built-in entries.
    """

    def __init__(self, kind: str, *, error: type[FairauditError] = FairauditError,
                 load: Callable[[], None] | None = None):
        self.kind, self.error = kind, error
        self._entries: dict[str, T] = {}
        self._load, self._loaded = load, load is None

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True
            self._load()

    def register(self, name: str, obj: T) -> T:
        """Add ``obj`` under ``name`` and return it; a different object under a taken name is refused."""
        existing = self._entries.get(name)
        if existing is not None and _identity(existing) != _identity(obj):
            raise self.error(f"two {self.kind}s are named '{name}': {_describe(existing)} and {_describe(obj)}; "
                             "pick another name for the new one.")
        self._entries[name] = obj
        return obj

    def unregister(self, name: str, default: Any = None) -> Any:
        """Remove ``name`` (e.g. a test's temporary entry); returns what was registered, or ``default``."""
        return self._entries.pop(name, default)

    pop = unregister

    def __getitem__(self, name: str) -> T:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            raise self.error(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        """``unknown <kind> 'x' (did you mean 'y'?); available: …`` (the suggestion only when one is close)."""
        self._ensure_loaded()
        return (f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; available: "
                f"{', '.join(sorted(self._entries))}.")

    def get(self, name: str, default: Any = None) -> Any:  # the Mapping meaning: no error
        self._ensure_loaded()
        return self._entries.get(name, default)

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._ensure_loaded()
        return iter(self._entries)

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"
