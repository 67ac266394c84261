"""Writing output files safely: atomic replacement, clear errors, and CSV cells spreadsheets cannot execute."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from fairaudit.errors import FairauditError

# A cell starting with one of these is run as a formula by Excel, LibreOffice or Google Sheets.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse an output path that is a folder or whose folder does not exist; return it as a ``Path``."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise FairauditError(f"output path '{path}' is a folder; give a file name inside it, "
                             f"e.g. '{path / ('out' + (path.suffix or '.json'))}'.")
    if not path.parent.is_dir():
        raise FairauditError(f"output folder '{path.parent}' does not exist.")
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any], *, make_parent: bool = True) -> Path:
    """Write a file with ``write(tmp)`` into a temporary file beside ``path``, then rename it into place.

    The one way files are written in fairaudit: a reader never sees a
    half-written file, a crash never leaves a stray temporary one, and the
    rename never crosses file systems. The temporary name keeps ``path``'s
    suffix (``np.savez`` and ``torch.save`` see the extension they expect).
    ``make_parent`` creates the folder (artefacts in the workspace); the CLI's
    user-given outputs use :func:`write_text_atomic`, which refuses a missing one.
    """
    path = Path(path)
    if make_parent:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`) into a folder that must exist.

    Errors raise :class:`~fairaudit.errors.FairauditError` with one sentence.
    """
    path = check_output_file(path)

    def write(tmp: Path) -> None:
        # os.open with mode 0o666 leaves the usual permissions (umask applied) to the final file.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w", encoding="utf-8") as handle:
            handle.write(text)

    try:
        return atomic_write(path, write, make_parent=False)
    except OSError as exc:
        raise FairauditError(f"cannot write '{path}': {exc.strerror or exc}.") from None


def _safe_cell(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cannot run as a spreadsheet formula.

    Every string cell (and column name) that starts with ``=``, ``+``, ``-``,
    ``@``, a tab or a carriage return gets a leading ``'``, which spreadsheets
    read as "show as text" (OWASP's advice against CSV injection); group names
    come from the audited data, so they may be hostile. Numbers, negative ones
    included, stay numbers.
    """
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            out[column] = values.astype(object).map(_safe_cell)
    out.columns = [_safe_cell(c) for c in out.columns]
    return out


def csv_text(frame: pd.DataFrame) -> str:
    """``frame`` as CSV text (no index) after :func:`csv_safe`: what every CSV the product writes goes through.

    Rows end with CRLF (RFC 4180), so a cell that contains a carriage return
    is quoted and cannot start a new row whose first cell is a formula.
    """
    return csv_safe(frame).to_csv(index=False, lineterminator="\r\n")


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write :func:`csv_text` of ``frame`` atomically to ``path``."""
    return write_text_atomic(path, csv_text(frame))
