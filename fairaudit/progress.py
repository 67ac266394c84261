"""How long-running work reports its progress: one shape, ``progress(fraction, message)``.

``fraction`` is the share of the work done, a float in ``[0, 1]``; ``message`` says in a few words what is
being done ("Latents after mitigation", "epoch 2/5"). Every function that takes a ``progress`` argument to tell
a person how far it is (the app's background tasks, embedding and explanation runs, face-model sweeps) calls it
so: positionally, fraction first.

Two kinds of callers speak in other units and are adapted to this shape here, so their callers need not
translate:

* batch loops count items, ``(done, total)`` (:data:`Counter`: inference, attacks, attributions);
  :func:`counting` turns a :class:`Progress` into one;
* the training loop, the mitigation methods and the jobs runner stream *events*, dicts that also carry the
  logged losses and the epoch (``{"event": "epoch", "epoch": 3, "loss": 0.41, "fraction": 0.6, ...}``;
  :data:`EventSink`); every such event holds ``fraction`` and :func:`describe` names it, and
  :func:`from_events` turns a :class:`Progress` into an event sink.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol

__all__ = ["Progress", "Counter", "EventSink", "no_progress", "clamp", "span", "counting", "describe",
           "from_events"]


class Progress(Protocol):
    """``progress(fraction, message)``: ``fraction`` in [0, 1] of the work done, ``message`` what is being done."""

    def __call__(self, fraction: float, message: str, /) -> None: ...


Counter = Callable[[int, int], None]
"""``count(done, total)`` of a batch loop (items done so far out of ``total``)."""

EventSink = Callable[[dict], None]
"""Receives the training loop's, a method's or a job's events: dicts with ``fraction`` in [0, 1] and logged
values (see :func:`describe`)."""


def no_progress(fraction: float, message: str, /) -> None:
    """A :class:`Progress` that ignores what it is told."""


def clamp(fraction: Any) -> float:
    """``fraction`` as a float in [0, 1] (0 for a missing or non-finite value)."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        return 0.0
    return min(1.0, max(0.0, value)) if value == value else 0.0


def span(progress: Progress | None, start: float, end: float, prefix: str = "") -> Progress:
    """A :class:`Progress` for one part of the work that maps its ``[0, 1]`` into ``[start, end]`` of
    ``progress`` (and puts ``prefix`` before its messages)."""
    target = progress or no_progress

    def report(fraction: float, message: str, /) -> None:
        target(start + (end - start) * clamp(fraction), f"{prefix}{message}")

    return report


def counting(progress: Progress | None, message: str, start: float = 0.0, end: float = 1.0) -> Counter:
    """A :data:`Counter` for a batch loop that reports ``done / total`` of it, mapped into ``[start, end]``,
    to ``progress`` with ``message``."""
    part = span(progress, start, end)

    def count(done: int, total: int) -> None:
        part(done / total if total else 1.0, message)

    return count


def describe(event: Mapping[str, Any]) -> str:
    """A short message for a training, method or job event: its ``message`` if it has one, else e.g.
    ``epoch 3/10 · loss 0.412``, ``step 5/20 of epoch 1`` or its phase and kind."""
    if event.get("message"):
        return str(event["message"])
    kind = event.get("event")
    loss = event.get("loss")
    tail = f" · loss {loss:.3f}" if isinstance(loss, (int, float)) else ""
    if kind == "epoch" and event.get("epoch") is not None:
        epochs = event.get("epochs")
        return f"epoch {event['epoch']}{f'/{epochs}' if epochs else ''}{tail}"
    if kind == "step" and event.get("step") is not None:
        steps = event.get("steps")
        return f"step {event['step']}{f'/{steps}' if steps else ''} of epoch {int(event.get('epoch', 0)) + 1}{tail}"
    words = [str(w).replace("_", " ") for w in (event.get("phase"), kind) if w]
    return " · ".join(words) or "working"


def from_events(progress: Progress | None) -> EventSink:
    """An :data:`EventSink` that tells ``progress`` each event's ``fraction`` and :func:`describe` message
    (events without a ``fraction``, such as a job's ``model_loaded``, carry no progress and are passed over)."""
    target = progress or no_progress

    def sink(event: dict) -> None:
        if "fraction" in event:
            target(clamp(event["fraction"]), describe(event))

    return sink
