"""Background mitigation jobs: a SQLite run registry, detached worker processes, optional Ray dispatch.

A job is a :class:`JobSpec` (method + dataset + model + settings, validated on
creation). :func:`submit` records it as a ``queued`` run in
``$FAIRAUDIT_HOME/runs.sqlite`` and makes sure a worker process is running;
the worker executes it with :func:`run_job`, the same function the CLI's
``mitigate`` command calls in the foreground. A page reload or a second tab
reads the same registry (:func:`get_run`, :func:`list_runs`); closing the
browser does not stop a worker. :func:`cancel` stops a run at its next step;
a run whose worker was killed shows up as ``interrupted`` and :func:`resume`
continues it from its last checkpoint.

Environment: ``FAIRAUDIT_WORKERS`` (local workers, default 1),
``FAIRAUDIT_WORKER_IDLE`` (seconds before an idle worker exits, default 60),
``FAIRAUDIT_RAY_ADDRESS`` (send runs to Ray instead of the local pool),
``FAIRAUDIT_STALE_SECONDS`` (heartbeat age after which a run counts as dead,
default 120), ``FAIRAUDIT_HEARTBEAT_SECONDS`` (seconds between heartbeats,
default 5, at most a third of the stale age), ``FAIRAUDIT_TEST_METHODS=1``
(register the test method ``noop_finetune`` of :mod:`fairaudit.jobs.testing`
in every process).

A run executes at most once at a time: the process working on it holds its
lease (:class:`~fairaudit.jobs.registry.Lease`, an owner and a fencing token
that moves on whenever the run is claimed, resumed or marked interrupted), and
every write it makes is conditioned on that token. A worker that was paused
past its heartbeat and wakes up after the run was resumed elsewhere stops at
its first write (:class:`~fairaudit.jobs.registry.LeaseLost`) and changes
nothing. Every run records the SHA-256 of the model file it audited as
``model_sha256``.
"""

from fairaudit.jobs.control import (backend_for, cancel, get_run, list_runs, resume, run_result, start_workers, submit,
                                    wait)
from fairaudit.jobs.execute import JobCancelled, run_job
from fairaudit.jobs.registry import (CANCELLED, DONE, FAILED, FINISHED, INTERRUPTED, QUEUED, RESUMABLE, RUNNING,
                                     STATUSES, JobRegistry, Lease, LeaseLost, RegistryError)
from fairaudit.jobs.spec import JobSpec

__all__ = ["JobSpec", "JobRegistry", "JobCancelled", "Lease", "LeaseLost", "RegistryError", "submit", "run_job",
           "cancel", "resume", "get_run", "list_runs", "start_workers", "wait", "run_result", "backend_for",
           "STATUSES", "QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED", "INTERRUPTED", "FINISHED", "RESUMABLE"]
