"""Dispatching runs to a Ray cluster (``pip install 'fairaudit[ray]'``).

A run submitted with ``ray_address`` (or ``$FAIRAUDIT_RAY_ADDRESS``) is queued
with backend ``ray:ADDRESS``. One worker process per address, the *driver*,
claims those runs and sends each one to the cluster as a Ray task that calls
the same :func:`~fairaudit.jobs.execute.execute` as a local worker, with one
CPU (and one GPU when the run asks for CUDA, or for ``auto`` on a cluster that
has GPUs). Progress events come back through a Ray queue and the driver, the
only process that writes the registry, records them; cancelling a run cancels
its task. If the driver dies its runs become ``interrupted`` like any other.
The driver holds each run's lease and conditions every registry write on it;
a run whose lease it finds lost (the driver was paused and the run resumed
elsewhere) has its task cancelled and is left to its new holder. The files a
task writes on the cluster are not fenced by the lease.

``ADDRESS`` is what :func:`ray.init` accepts: ``local`` starts a private Ray
instance on this machine, ``auto`` joins the cluster this machine belongs to,
``ray://host:10001`` connects a client. On a multi-node cluster the nodes need
fairaudit installed, the model files and data folders at the same paths, and
write the run's artefacts to the same ``$FAIRAUDIT_HOME/runs/<id>`` path, so
that folder is best on shared storage.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

from fairaudit.errors import FairauditError
from fairaudit.jobs.execute import (WRITE_INTERVAL, JobCancelled, Recorder, execute, heartbeat_seconds,
                                    record_failure, record_result, run_dir)
from fairaudit.jobs.registry import FAILED, QUEUED, JobRegistry, Lease, LeaseLost
from fairaudit.jobs.spec import JobSpec

MAX_IN_FLIGHT = int(os.environ.get("FAIRAUDIT_RAY_MAX_IN_FLIGHT", "64"))
POLL_SECONDS = 0.25


def import_ray():
    try:
        import ray
    except ImportError:
        raise FairauditError("dispatching jobs to Ray needs the ray package: pip install 'fairaudit[ray]'.") from None
    return ray


def task_environment() -> dict[str, str]:
    """What a Ray task needs from this process: fairaudit's settings and where the package is."""
    env = {k: v for k, v in os.environ.items() if k.startswith("FAIRAUDIT_")}
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    return env


class _Throttle:
    """Forwards phase changes, the *before* audit and epoch events at once, other events ≤ 5 per second."""

    def __init__(self, send):
        self.send, self.last, self.phase = send, 0.0, None

    def __call__(self, event: dict) -> None:
        now = time.monotonic()
        urgent = event.get("event") in ("epoch", "before_audit", "model_loaded") or event.get("phase") != self.phase
        if urgent or now - self.last >= WRITE_INTERVAL:
            self.send(event)
            self.last, self.phase = now, event.get("phase")


def execute_task(spec: dict, run_id: str, workdir: str, resume: bool, before: dict | None, events,
                 env: dict[str, str], model_sha256: str | None = None) -> dict:
    """The body of one Ray task."""
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONPATH"})
    return execute(JobSpec.from_dict(spec), run_id, Path(workdir), resume=resume, before=before,
                   emit=_Throttle(lambda event: events.put((run_id, event))), model_sha256=model_sha256)


def _num_gpus(ray, device: str) -> int:
    if device.startswith("cuda"):
        return 1
    return int(device == "auto" and ray.cluster_resources().get("GPU", 0) >= 1)


def _fail_queued(registry: JobRegistry, backend: str, message: str) -> None:
    for run in registry.list(limit=10_000, status=QUEUED):
        if run["backend"] == backend:
            registry.set_status(run["id"], FAILED, message=message)


def _drain(queue) -> list:
    size = queue.size()
    return queue.get_nowait_batch(size) if size else []


def drive(registry: JobRegistry, backend: str, pid: int, idle: float) -> None:
    """The driver loop for ``backend = "ray:ADDRESS"``; returns after ``idle`` seconds without work."""
    address = backend.split(":", 1)[1]
    try:
        ray = import_ray()
        env = task_environment()
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False,
                 runtime_env={"env_vars": env})
    except FairauditError as exc:
        _fail_queued(registry, backend, str(exc))
        return
    except Exception as exc:
        _fail_queued(registry, backend, f"could not connect to the Ray cluster at '{address}' "
                                        f"({type(exc).__name__}: {exc}).")
        return
    from ray.exceptions import RayTaskError, TaskCancelledError
    from ray.util.queue import Queue

    events = Queue()
    remote = ray.remote(execute_task)
    in_flight: dict = {}  # ObjectRef -> run id
    recorders: dict[str, Recorder] = {}
    leases: dict[str, Lease] = {}
    cancelled: set[str] = set()
    idle_since, last_beat = time.monotonic(), time.monotonic()

    def guarded(run_id: str, write) -> None:
        """Do ``write()`` for one run; a lost lease cancels its task and forgets the run."""
        try:
            write()
        except LeaseLost:
            for ref in [r for r, rid in in_flight.items() if rid == run_id]:
                ray.cancel(ref)
                in_flight.pop(ref)
            recorders.pop(run_id, None)
            leases.pop(run_id, None)

    def record_events() -> None:
        for run_id, event in _drain(events):
            if run_id in recorders:
                guarded(run_id, lambda: recorders[run_id](event))

    try:
        while True:
            while len(in_flight) < MAX_IN_FLIGHT:
                lease = registry.claim_next(pid, backend)
                if lease is None:
                    break
                run_id = lease.run_id
                run = registry.get(run_id)
                workdir = run_dir(run_id)
                try:
                    registry.update_fields(run_id, lease=lease, workdir=str(workdir))
                except LeaseLost:
                    continue
                leases[run_id] = lease
                recorders[run_id] = Recorder(registry, run_id, lease=lease)
                spec = dict(run["spec"])
                gpus = _num_gpus(ray, spec["device"])
                if spec["device"].startswith("cuda"):
                    spec["device"] = "cuda"  # a task sees its own GPU as device 0
                ref = remote.options(num_cpus=1, num_gpus=gpus).remote(
                    spec, run_id, str(workdir), run["resume"], run["before"], events, env,
                    run["model_sha256"] if run["before"] is not None else None)
                in_flight[ref] = run_id
            record_events()
            for ref, run_id in list(in_flight.items()):
                if run_id not in cancelled and run_id in recorders:
                    def poll(ref=ref, run_id=run_id):
                        if recorders[run_id].should_stop():
                            ray.cancel(ref)
                            cancelled.add(run_id)
                    guarded(run_id, poll)
            if time.monotonic() - last_beat > heartbeat_seconds():
                for run_id in list(in_flight.values()):
                    if run_id in leases:
                        guarded(run_id, lambda: registry.heartbeat(run_id, leases[run_id]))
                last_beat = time.monotonic()
            if not in_flight:
                if time.monotonic() - idle_since > idle and registry.retire_worker(pid, backend):
                    return
                time.sleep(POLL_SECONDS)
                continue
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_SECONDS)
            record_events()
            for ref in ready:
                if ref not in in_flight:  # its lease was lost while the events were recorded
                    continue
                run_id = in_flight.pop(ref)
                guarded(run_id, lambda: _record_outcome(ray, registry, run_id, ref, leases[run_id], run_id in cancelled,
                                                        RayTaskError, TaskCancelledError))
                recorders.pop(run_id, None)
                leases.pop(run_id, None)
                cancelled.discard(run_id)
                idle_since = time.monotonic()
    except BaseException as exc:
        for run_id in in_flight.values():
            try:
                record_failure(registry, run_id, exc if isinstance(exc, (KeyboardInterrupt, SystemExit)) else
                               RuntimeError(f"the Ray driver stopped: {type(exc).__name__}: {exc}"),
                               lease=leases.get(run_id))
            except LeaseLost:
                pass
        raise
    finally:
        ray.shutdown()


def _record_outcome(ray, registry: JobRegistry, run_id: str, ref, lease: Lease, cancelled: bool, RayTaskError,
                    TaskCancelledError) -> None:
    """Record the result or the error of a finished task, under the run's lease."""
    try:
        result = ray.get(ref)
    except TaskCancelledError:
        record_failure(registry, run_id, JobCancelled(f"run '{run_id}' was cancelled."), lease=lease)
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None) or exc
        if isinstance(cause, KeyboardInterrupt) and cancelled:
            cause = JobCancelled(f"run '{run_id}' was cancelled.")
        record_failure(registry, run_id, cause, str(exc), lease=lease)
    except Exception as exc:
        record_failure(registry, run_id, exc, traceback.format_exc(), lease=lease)
    else:
        record_result(registry, run_id, result, lease)
