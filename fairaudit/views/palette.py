"""The one categorical palette for groups (and methods, splits, conditions) in every chart.

The first eight colours are Okabe & Ito's colour-blind-safe set (Color
Universal Design, 2008), ordered so that the first two — the usual two
groups — are blue and orange, the pair that stays distinct under every
common colour-vision deficiency and in greyscale; Paul Tol's muted colours
follow, so 12 groups get distinct colours before the palette repeats.
"""

from __future__ import annotations

from typing import Iterable

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
           "#882255", "#44AA99", "#999933", "#888888")
# Without black, for charts that draw a reference (the baseline) in black.
PALETTE_NO_BLACK = tuple(c for c in PALETTE if c != "#000000")


def colour(i: int, palette: tuple[str, ...] = PALETTE) -> str:
    """The ``i``-th categorical colour (the palette repeats after its last colour)."""
    return palette[i % len(palette)]


def colour_map(values: Iterable, palette: tuple[str, ...] = PALETTE) -> dict[str, str]:
    """``{value: colour}`` for the distinct values in the order given (for plotly's ``color_discrete_map``)."""
    out: dict[str, str] = {}
    for value in values:
        if str(value) not in out:
            out[str(value)] = colour(len(out), palette)
    return out
