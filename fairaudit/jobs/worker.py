"""Worker processes: ``python -m fairaudit.jobs.worker`` claims queued runs and executes them.

Workers are started by :func:`ensure_workers` (which :func:`~fairaudit.jobs.submit`
and :func:`~fairaudit.jobs.start_workers` call) as detached processes in their own session, so they outlive the
Streamlit script run, the browser tab and even the server process that started
them. Each worker runs one job at a time; ``FAIRAUDIT_WORKERS`` (default 1)
sets how many local workers may run at once. A worker with nothing to do for
``FAIRAUDIT_WORKER_IDLE`` seconds (default 60) exits; the next submission
starts a new one. Its output goes to ``$FAIRAUDIT_HOME/logs/worker.log``.

A run handed to Ray (backend ``ray:ADDRESS``) is driven by one worker per
address that dispatches the runs to the cluster (:mod:`fairaudit.jobs.ray_backend`).

A worker that finds it lost the lease on its run (it was paused past its
heartbeat, the run was marked ``interrupted`` and resumed elsewhere) stops
working on it at once, writes nothing more, and exits.

The methods a worker knows are the built-in ones, plus the test-only methods of
:mod:`fairaudit.jobs.testing` when ``FAIRAUDIT_TEST_METHODS=1`` is set in the
environment of the process that starts it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
from pathlib import Path

from fairaudit import workspace
from fairaudit.errors import FairauditError
from fairaudit.jobs.registry import JobRegistry, LeaseLost

WORKERS_ENV = "FAIRAUDIT_WORKERS"
IDLE_ENV = "FAIRAUDIT_WORKER_IDLE"
POLL_SECONDS = 0.5
_CHILDREN: list[subprocess.Popen] = []  # kept so that finished workers are reaped, not left as zombies


def worker_count(n: int | None = None) -> int:
    """``n``, else ``FAIRAUDIT_WORKERS``, else 1."""
    if n is None:
        raw = os.environ.get(WORKERS_ENV, "1")
        try:
            n = int(raw)
        except ValueError:
            raise FairauditError(f"{WORKERS_ENV} must be a whole number ≥ 1, got {raw!r}.") from None
    if n < 1:
        raise FairauditError(f"the number of workers must be ≥ 1, got {n}.")
    return n


def idle_seconds() -> float:
    return float(os.environ.get(IDLE_ENV, "60"))


def _spawn(backend: str) -> subprocess.Popen:
    home = workspace.home().resolve()
    log = workspace.subdir("logs") / "worker.log"
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "FAIRAUDIT_HOME": str(home),
           "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fairaudit.jobs.worker", "--backend", backend],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=os.getcwd(), start_new_session=True, close_fds=True)
    _CHILDREN.append(proc)
    return proc


def _reap() -> None:
    _CHILDREN[:] = [p for p in _CHILDREN if p.poll() is None]


def ensure_workers(registry: JobRegistry, backend: str = "local", n: int | None = None,
                   conn: sqlite3.Connection | None = None) -> list[int]:
    """Start workers for ``backend`` until ``n`` are alive; return the new pids.

    Counting and starting happen in one registry transaction, so concurrent
    callers never start more than ``n`` workers. A Ray backend needs one driver.
    """
    _reap()
    n = 1 if backend.startswith("ray:") else worker_count(n)
    if conn is None:
        with registry.transaction() as own:
            return ensure_workers(registry, backend, n, own)
    started = []
    for _ in range(n - len(registry.live_workers(backend, conn))):
        proc = _spawn(backend)
        registry.add_worker(proc.pid, backend, conn)
        started.append(proc.pid)
    return started


def serve(backend: str = "local", idle: float | None = None, registry: JobRegistry | None = None) -> None:
    """The worker loop: claim, run, repeat; return after ``idle`` seconds without work."""
    from fairaudit.jobs.execute import Heartbeat, run_job
    from fairaudit.jobs.spec import load_methods

    load_methods()
    registry = registry or JobRegistry()
    idle = idle_seconds() if idle is None else idle
    pid = os.getpid()
    registry.add_worker(pid, backend)
    try:
        with Heartbeat(lambda: registry.worker_heartbeat(pid)):
            if backend.startswith("ray:"):
                from fairaudit.jobs.ray_backend import drive

                drive(registry, backend, pid, idle)
                return
            idle_since = time.monotonic()
            while True:
                registry.mark_interrupted()
                lease = registry.claim_next(pid, backend)
                if lease is not None:
                    run_id = lease.run_id
                    _log(f"run {run_id} started (lease {lease.token})")
                    try:
                        run_job(run_id, registry=registry, lease=lease)
                        _log(f"run {run_id} done")
                    except LeaseLost as exc:  # another worker holds the run now: leave it alone, and quit
                        _log(f"run {run_id}: {exc}")
                        return
                    except Exception as exc:  # recorded in the registry by run_job; the worker goes on
                        _log(f"run {run_id} stopped: {type(exc).__name__}: {exc}")
                        if not isinstance(exc, FairauditError):
                            traceback.print_exc()
                    idle_since = time.monotonic()
                    continue
                if time.monotonic() - idle_since > idle and registry.retire_worker(pid, backend):
                    return
                time.sleep(POLL_SECONDS)
    finally:
        registry.remove_worker(pid)


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} worker {os.getpid()}: {message}", flush=True)


def _terminate(signum, frame):
    # SystemExit unwinds run_job, which records the run as interrupted (resumable).
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fairaudit.jobs.worker",
                                     description="Run queued fairaudit jobs until idle.")
    parser.add_argument("--backend", default="local", help="'local' or 'ray:ADDRESS'")
    parser.add_argument("--idle", type=float, help=f"exit after this many idle seconds (default ${IDLE_ENV} or 60)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    _log(f"started (backend {args.backend}, home {workspace.home().resolve()})")
    serve(args.backend, args.idle)
    _log("idle, exiting")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
