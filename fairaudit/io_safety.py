"""Writing output files safely: atomic replacement and clear errors."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from fairaudit.errors import FairauditError


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse an output path that is a folder or whose folder does not exist; return it as a ``Path``."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise FairauditError(f"output path '{path}' is a folder; give a file name inside it, "
                             f"e.g. '{path / ('out' + (path.suffix or '.json'))}'.")
    if not path.parent.is_dir():
        raise FairauditError(f"output folder '{path.parent}' does not exist.")
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename it into place.

    A crash or a refusal never leaves a half-written file or a stray temporary
    file; errors raise :class:`~fairaudit.errors.FairauditError` with one sentence.
    """
    path = check_output_file(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open with mode 0o666 leaves the usual permissions (umask applied) to the final file.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise FairauditError(f"cannot write '{path}': {exc.strerror or exc}.") from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return path

