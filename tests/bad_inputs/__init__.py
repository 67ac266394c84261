"""The bad-input corpus: hostile or broken inputs, each one a :class:`BadInput`.

Every case module (``cases_*.py`` in this package) exports ``CASES``, a list of
cases; ``tests/test_bad_input_corpus.py`` runs each one through the CLI and,
where the case names one, through the app's upload loader. A case builds its
files inside the folder it is given (the test's sandbox) and returns the CLI
arguments; the test then checks that the CLI printed exactly one line on stderr,
exited with code 2, showed no traceback, wrote nothing outside the workspace and
that no ``MARKER`` file appeared (code injected into a hostile file writes one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

MARKER = "INJECTED_CODE_RAN"


@dataclass(frozen=True)
class BadInput:
    """One hostile or broken input.

    ``build(sandbox)`` writes what the case needs under ``sandbox`` and returns
    the CLI arguments (without ``python -m fairaudit``). ``message`` is a
    case-insensitive fragment the one-line error must contain. ``upload``, when
    given, is called as ``upload(sandbox)`` after ``build`` and must raise a
    :class:`~fairaudit.errors.FairauditError` (the app shows its message).
    ``needs_demo`` asks the test for the trained synthetic-faces demo model.
    ``env`` names environment variables set while the CLI runs; ``{sandbox}``
    in a value stands for the sandbox folder (e.g. ``FAIRAUDIT_HOME``).
    """

    name: str
    build: Callable[[Path], list[str]]
    message: str
    upload: Callable[[Path], object] | None = None
    needs_demo: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)
    env: dict[str, str] = field(default_factory=dict)


def marker_path(sandbox: Path) -> Path:
    """Where injected code in a hostile file tries to write."""
    return sandbox / MARKER
