"""Submitting, following, cancelling and resuming runs (what the app and the CLI call)."""

from __future__ import annotations

import os
import time
from typing import Callable

from fairaudit.errors import FairauditError
from fairaudit.jobs.registry import FINISHED, RESUMABLE, JobRegistry
from fairaudit.jobs.spec import JobSpec

RAY_ADDRESS_ENV = "FAIRAUDIT_RAY_ADDRESS"


def backend_for(ray_address: str | None = None) -> str:
    """``"ray:ADDRESS"`` for ``ray_address`` or ``$FAIRAUDIT_RAY_ADDRESS`` (``local`` starts a private Ray
    instance), else ``"local"`` (the local worker pool)."""
    address = ray_address or os.environ.get(RAY_ADDRESS_ENV)
    return f"ray:{address}" if address else "local"


def start_workers(n: int | None = None, *, ray_address: str | None = None,
                  registry: JobRegistry | None = None) -> list[int]:
    """Make sure the worker pool is running (``n`` local workers, default ``$FAIRAUDIT_WORKERS`` or 1, or the
    Ray driver for ``ray_address``); return the pids started now. Also marks runs whose worker died as
    ``interrupted``."""
    from fairaudit.jobs.worker import ensure_workers

    registry = registry or JobRegistry()
    registry.mark_interrupted()
    return ensure_workers(registry, backend_for(ray_address), n)


def submit(spec: JobSpec, *, ray_address: str | None = None, registry: JobRegistry | None = None,
           start: bool = True) -> str:
    """Queue ``spec`` and return its run id at once; the worker pool (or the Ray driver) is started if needed.

    The run is recorded and the workers counted and started in one
    transaction, so a run is never left queued with no worker to take it.
    ``start=False`` only queues it.
    """
    from fairaudit.jobs.execute import resolved_config
    from fairaudit.jobs.worker import ensure_workers

    if not isinstance(spec, JobSpec):
        raise FairauditError("submit() expects a JobSpec.")
    registry = registry or JobRegistry()
    backend = backend_for(ray_address)
    registry.mark_interrupted()

    def start_pool(conn) -> None:
        if start:
            ensure_workers(registry, backend, conn=conn)

    return registry.create_run(spec, config=resolved_config(spec), backend=backend, on_created=start_pool)


def cancel(run_id: str, *, registry: JobRegistry | None = None) -> str:
    """Cancel a queued run at once, or ask a running one to stop at its next step; returns its status now."""
    return (registry or JobRegistry()).request_cancel(run_id)


def resume(run_id: str, *, foreground: bool = False, progress: Callable[[dict], None] | None = None,
           registry: JobRegistry | None = None) -> str:
    """Continue an ``interrupted``, ``failed`` or ``cancelled`` run from its last checkpoint; returns ``run_id``.

    The run keeps its id, folder and *before* audit; the method receives
    ``ctx.resume=True`` and ``ctx.checkpoint_path``. By default the run is
    queued for the worker pool (or Ray, if it was submitted there);
    ``foreground=True`` runs it in this process (as the CLI does).
    """
    from fairaudit.jobs.execute import run_job
    from fairaudit.jobs.worker import ensure_workers

    registry = registry or JobRegistry()
    registry.mark_interrupted()
    if foreground:
        lease = registry.reopen(run_id, claim_pid=os.getpid())
        run_job(run_id, progress, registry=registry, lease=lease)
        return run_id
    backend = registry.get(run_id)["backend"]
    backend = "local" if backend == "foreground" else backend
    registry.reopen(run_id, backend=backend)
    ensure_workers(registry, backend)
    return run_id


def get_run(run_id: str, *, registry: JobRegistry | None = None) -> dict:
    """Every recorded field of a run (JSON fields parsed) plus ``metrics``: its per-epoch rows."""
    registry = registry or JobRegistry()
    registry.mark_interrupted()
    return registry.get(run_id)


def list_runs(limit: int = 100, dataset: str | None = None, status: str | None = None, *,
              registry: JobRegistry | None = None) -> list[dict]:
    """The newest runs first, without the full reports (``summary`` has the headline numbers)."""
    registry = registry or JobRegistry()
    registry.mark_interrupted()
    return registry.list(limit, dataset, status)


def wait(run_id: str, timeout: float | None = None, poll: float = 0.25,
         on_update: Callable[[dict], None] | None = None, *, registry: JobRegistry | None = None) -> dict:
    """Block until the run is finished (or ``timeout`` seconds pass) and return it; ``on_update(run)`` per poll."""
    registry = registry or JobRegistry()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        run = get_run(run_id, registry=registry)
        if on_update is not None:
            on_update(run)
        if run["status"] in FINISHED or (deadline is not None and time.monotonic() > deadline):
            return run
        time.sleep(poll)


def run_result(run: dict) -> dict:
    """The result JSON of a finished run (as :func:`~fairaudit.jobs.run_job` returns it) from its registry record."""
    if run["status"] != "done":
        hint = " (resume it with `fairaudit runs --resume ID`)" if run["status"] in RESUMABLE else ""
        raise FairauditError(run["message"] or f"run '{run['id']}' is {run['status']}{hint}.")
    keys = ("method", "dataset", "model", "config", "spec", "seed", "device", "before", "after", "summary",
            "artifacts", "stats", "history", "seconds", "timings", "versions")
    return {"run_id": run["id"], **{k: run.get(k) for k in keys}}
