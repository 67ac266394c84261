"""Shareable views: the state of a page that changes what it shows lives in the page URL.

Every page reads its initial widget values from ``st.query_params`` with
:func:`url_value` (or :func:`url_values` for multi-selections) and writes the
current values back with :func:`sync`, so a copied link opens the same view on
the same server. A value that a link names but that cannot be used (unknown,
stale, not a number, out of range) gives a one-line notice, is dropped from
the URL and the widget starts from its usual default. :func:`copy_link` shows
the link of the current view, ready to copy.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence
from urllib.parse import urlencode, urlsplit

import streamlit as st

NOTICES = "query-state-notices"


def _notice(param: str, raw: str, why: str) -> None:
    st.caption(f":material/link_off: The link's `{param}={raw}` {why}; showing the default instead.")


def url_value(param: str, default: Any, *, choices: Sequence | None = None,
              bounds: tuple[float, float] | None = None, kind: Callable[[str], Any] | None = None) -> Any:
    """The value the URL names for ``param``, else ``default``.

    ``choices``: the allowed values (matched by their text); ``bounds``: an inclusive ``(low, high)`` range
    for a number; ``kind``: how to read the text (``float``, ``int``, ``bool`` or any callable), by default
    the type of ``default``. A value that fails any check gives a one-line notice and ``default``.
    """
    raw = st.query_params.get(param)
    if raw is None:
        return default
    if choices is not None:
        by_text = {str(c): c for c in choices}
        if raw in by_text:
            return by_text[raw]
        _drop(param)
        _notice(param, raw, "is not one of the choices here")
        return default
    read = kind or (type(default) if default is not None else str)
    try:
        if read is bool:
            if raw.lower() not in ("1", "0", "true", "false"):
                raise ValueError(raw)
            value: Any = raw.lower() in ("1", "true")
        else:
            value = read(raw)
    except (TypeError, ValueError):
        _drop(param)
        _notice(param, raw, f"is not a valid {getattr(read, '__name__', 'value')}")
        return default
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        _drop(param)
        _notice(param, raw, f"lies outside {bounds[0]:g}–{bounds[1]:g}")
        return default
    return value


def url_values(param: str, default: Sequence, choices: Sequence) -> list:
    """The values the URL names for a multi-selection (``?param=a&param=b``), else ``default``; values that
    are not among ``choices`` are left out with a one-line notice."""
    if param not in st.query_params:
        return list(default)
    raw = st.query_params.get_all(param)
    by_text = {str(c): c for c in choices}
    unknown = [r for r in raw if r not in by_text]
    if unknown:
        _notice(param, ", ".join(unknown), "names values that are not choices here")
    chosen = [by_text[r] for r in raw if r in by_text]
    if unknown:
        sync(param, chosen, None)
    return chosen if chosen or not unknown else list(default)


def _drop(param: str) -> None:
    try:
        st.query_params.pop(param, None)
    except Exception:  # a parameter Streamlit binds itself cannot be removed here
        pass


def _text(value: Any) -> str | list[str]:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value)


def sync(param: str, value: Any, default: Any) -> None:
    """Name ``value`` in the URL as ``param``; a value equal to ``default`` leaves the URL clean."""
    if value is None or value == default or (isinstance(value, (list, tuple)) and default is not None
                                             and list(value) == list(default)):
        _drop(param)
        return
    text = _text(value)
    if st.query_params.get_all(param) != (text if isinstance(text, list) else [text]):
        st.query_params[param] = text


def view_link(url_path: str = "") -> str:
    """The full link of the current view: this server, the page's path and the current query parameters."""
    base = ""
    try:
        url = st.context.url or ""
    except Exception:  # outside a served session (tests)
        url = ""
    if url:
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""
    pairs = [(k, v) for k in st.query_params for v in st.query_params.get_all(k)]
    query = urlencode(pairs)
    return f"{base}/{url_path}" + (f"?{query}" if query else "")


def copy_link(url_path: str = "") -> None:
    """A "Copy link to this view" button: the link in a box with a copy button."""
    with st.popover("Copy link to this view", icon=":material/link:", width="stretch"):
        st.code(view_link(url_path), language=None, wrap_lines=True)
        st.caption("Anyone who can reach this server opens the same view with this link.")
