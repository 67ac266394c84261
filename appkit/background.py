"""A process-wide registry of background tasks, keyed by a string.

The app runs long work (training the demo model on first use, one inference
pass) in a thread so that a page reload, or a second browser tab, finds the
same task by its key instead of starting it again::

    submit("audit:abc", run_setup, setup)   # fn(*args, progress=callback)
    state = get("audit:abc")                 # status, fraction, message, result, error

``fn`` receives a keyword argument ``progress(fraction, message)`` it may
call at any time from its thread. A finished task keeps its result until it
is evicted (the oldest finished tasks beyond :data:`MAX_FINISHED`) or
forgotten; a failed task is started afresh by the next :func:`submit`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

RUNNING, DONE, FAILED = "running", "done", "failed"
MAX_FINISHED = 16


@dataclass
class TaskState:
    """A snapshot of one task; :func:`get` returns a copy, safe to read without the lock."""

    key: str
    status: str = RUNNING
    fraction: float = 0.0
    message: str = ""
    result: Any = None
    error: BaseException | None = None
    traceback: str = ""
    started: float = dataclasses.field(default_factory=time.time)
    finished: float | None = None

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def done(self) -> bool:
        return self.status == DONE

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started


_TASKS: dict[str, TaskState] = {}
_LOCK = threading.Lock()


def _evict_finished() -> None:
    finished = sorted((s for s in _TASKS.values() if not s.running), key=lambda s: s.finished or 0.0)
    for state in finished[:max(0, len(finished) - MAX_FINISHED)]:
        del _TASKS[state.key]


def submit(key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> TaskState:
    """Start ``fn(*args, progress=..., **kwargs)`` in a thread unless ``key`` is running or done.

    Returns the state of the task now registered under ``key`` (the existing
    one when it is running or done).
    """
    with _LOCK:
        existing = _TASKS.get(key)
        if existing is not None and not existing.failed:
            return dataclasses.replace(existing)
        state = TaskState(key=key)
        _TASKS[key] = state
        _evict_finished()

    def progress(fraction: float, message: str = "") -> None:
        with _LOCK:
            state.fraction = min(1.0, max(0.0, float(fraction)))
            if message:
                state.message = message

    def work() -> None:
        try:
            result = fn(*args, progress=progress, **kwargs)
        except BaseException as exc:  # reported through the state, never lost in a thread
            with _LOCK:
                state.status, state.error = FAILED, exc
                state.traceback = traceback.format_exc()
                state.finished = time.time()
        else:
            with _LOCK:
                state.status, state.result, state.fraction = DONE, result, 1.0
                state.finished = time.time()
                _evict_finished()

    threading.Thread(target=work, name=f"fairaudit:{key}", daemon=True).start()
    with _LOCK:
        return dataclasses.replace(state)


def get(key: str) -> TaskState | None:
    """The current state of the task ``key``, or ``None`` if there is none."""
    with _LOCK:
        state = _TASKS.get(key)
        return dataclasses.replace(state) if state is not None else None


def wait(key: str, timeout: float | None = None, poll: float = 0.05) -> TaskState | None:
    """Block until task ``key`` is no longer running (or ``timeout`` seconds pass)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = get(key)
        if state is None or not state.running or (deadline is not None and time.monotonic() > deadline):
            return state
        time.sleep(poll)


def forget(key: str) -> bool:
    """Drop a finished task so the next :func:`submit` runs it again; a running task is kept."""
    with _LOCK:
        state = _TASKS.get(key)
        if state is None or state.running:
            return False
        del _TASKS[key]
        return True


def keys() -> list[str]:
    with _LOCK:
        return list(_TASKS)
