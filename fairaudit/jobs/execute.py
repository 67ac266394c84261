"""Running one job: audit the deployed model, run the method, audit the result, record everything.

:func:`execute` does the work and knows nothing about the registry, so the
same code runs in a worker process, in the CLI's foreground and in a Ray task.
:func:`run_job` wraps it for one registered run: it streams progress events to
the registry (at most :data:`WRITE_INTERVAL` apart, epoch metrics always),
polls the run's cancel flag, keeps a heartbeat, and records the result or the
error.

Overall progress: loading and the *before* audit take the first 5 %, the
method 5–95 % (its own ``fraction`` scaled), the *after* audit the rest.

Cancelling: ``ctx.should_stop()`` turns true, and the next call of
``ctx.progress`` raises :class:`JobCancelled`, so a method stops at its next
progress event even if it never polls ``should_stop``.

Leases: :func:`run_job` works on a run only while it holds the run's lease
(:class:`~fairaudit.jobs.registry.Lease`). Every registry write, the
heartbeat, the cancel poll and every artefact :func:`execute` moves into the
run's folder check it; the first one that finds the lease taken over raises
:class:`~fairaudit.jobs.registry.LeaseLost`, which ends the work without
touching the run's record. The heartbeat interval is
``$FAIRAUDIT_HEARTBEAT_SECONDS`` (default 5, and at most a third of
``$FAIRAUDIT_STALE_SECONDS``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import threading
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, ContextManager

from fairaudit import workspace
from fairaudit.errors import FairauditError
from fairaudit.jobs.registry import (CANCELLED, DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, JobRegistry, Lease,
                                     LeaseLost, owner_id, pid_alive, stale_seconds)
from fairaudit.jobs.spec import JobSpec
from fairaudit.seeding import library_versions, run_metadata, seed_everything  # noqa: F401  (re-exported)

LOADING, BEFORE, MITIGATING, AFTER = "loading", "auditing before", "mitigating", "auditing after"
BEFORE_END, METHOD_END = 0.05, 0.95
WRITE_INTERVAL = 0.2  # seconds between progress writes: ≤ 5 per second
STOP_POLL_INTERVAL = 0.5
HEARTBEAT_SECONDS = 5.0  # default; see heartbeat_seconds()
HEARTBEAT_ENV = "FAIRAUDIT_HEARTBEAT_SECONDS"
_EVENT_KEYS_NOT_METRICS = frozenset({"event", "phase", "fraction", "epoch", "step", "steps", "seconds"})

Emit = Callable[[dict], None]
Fence = Callable[[], ContextManager]


def heartbeat_seconds() -> float:
    """Seconds between heartbeats: ``$FAIRAUDIT_HEARTBEAT_SECONDS`` (default 5), at most a third of the stale age,
    so a live worker is never taken for a dead one."""
    try:
        every = float(os.environ.get(HEARTBEAT_ENV, HEARTBEAT_SECONDS))
    except ValueError:
        raise FairauditError(f"{HEARTBEAT_ENV} must be a number of seconds > 0, got "
                             f"{os.environ[HEARTBEAT_ENV]!r}.") from None
    if not every > 0:
        raise FairauditError(f"{HEARTBEAT_ENV} must be a number of seconds > 0, got {every!r}.")
    return min(every, stale_seconds() / 3)


class JobCancelled(FairauditError):
    """Raised inside a run when its cancel flag is set; the run is recorded as ``cancelled``."""


def run_dir(run_id: str) -> Path:
    """Where the artefacts, checkpoint and ``result.json`` of a run live."""
    path = workspace.subdir("runs") / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def _summary(report: dict) -> dict:
    keys = ("spd", "deo", "eo_max", "worst_group_accuracy")
    return {"accuracy": report["overall"].get("accuracy"), **{k: report["disparities"].get(k) for k in keys}}


def _scalars(event: dict) -> dict[str, Any]:
    """The JSON-friendly part of an event (what the registry keeps as ``event``)."""
    return {k: v for k, v in event.items() if isinstance(v, (str, int, float, bool)) or v is None}


def _publish(workdir: Path, name: str, write: Callable[[Path], Any], fence: Fence) -> Path:
    """Write artefact ``name`` of a run with ``write(path)`` and move it into ``workdir`` inside ``fence()``.

    ``write`` works in a private folder of ``workdir`` (it may write companion
    files, e.g. a JSON sidecar); every file it wrote is renamed into
    ``workdir`` while the fence holds, i.e. while the run's lease is
    certainly held, so a process that lost its lease never replaces the
    current holder's files. Returns the published path of what ``write``
    returned (or of ``name``).
    """
    stage = Path(tempfile.mkdtemp(prefix=".writing-", dir=workdir))
    try:
        written = write(stage / name)
        with fence():
            for item in sorted(stage.iterdir()):
                os.replace(item, workdir / item.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return workdir / Path(written if isinstance(written, (str, Path)) else name).name


def check_model_file(source: dict, expected: str | None, run_id: str) -> None:
    """Refuse a deployed-model file whose SHA-256 is not the ``expected`` one the run recorded.

    ``source`` is what :func:`fairaudit.loading.resolve_model` filled in. A
    resumed run must fine-tune the very weights its stored *before* audit
    measured, and a finished run's models are only its models while the file
    is unchanged. Runs recorded without a hash are not checked.
    """
    if expected and source.get("sha256") != expected:
        raise FairauditError(f"the model file '{source.get('path')}' has changed since run '{run_id}' recorded it "
                             f"(SHA-256 {expected[:12]}… then, {str(source.get('sha256'))[:12]}… now), so it is not "
                             "the model the run audited; restore that file, or start a new run with this one.")


def execute(spec: JobSpec, run_id: str, workdir: Path, *, resume: bool = False, before: dict | None = None,
            emit: Emit = lambda event: None, should_stop: Callable[[], bool] = lambda: False,
            fence: Fence = nullcontext, model_sha256: str | None = None) -> dict:
    """Run job ``spec`` and return the result JSON (also written to ``workdir/result.json``).

    ``before`` is the stored *before* audit of a resumed run (not recomputed);
    ``emit`` receives every progress event as ``{"phase", "fraction", ...}``
    where ``fraction`` is the overall progress; an event ``{"event":
    "before_audit", "report": ...}`` carries the *before* audit as soon as it
    exists, and ``{"event": "model_loaded", "model_sha256": ...}`` the
    SHA-256 of the deployed model's file (also ``model_sha256`` in the
    result). ``should_stop()`` cancels the run between steps
    (:class:`JobCancelled`). ``fence()`` is entered around every rename of an
    artefact into ``workdir`` (:func:`run_job` passes the lease check).
    ``model_sha256`` is the hash a resumed run recorded: a model file that
    changed since is refused.

    Besides ``before``/``after`` (test split) the result holds
    ``robustness`` ``{"before", "after", "threat_model"}`` (the robustness JSON of
    :mod:`fairaudit.robustness`: FGSM and PGD per group within one named
    :class:`~fairaudit.robustness.ThreatModel`, the method's own where it
    names one (the FRoC family: the authors' released code's), else PGD-10
    on the numeric features against the true labels; at most
    ``spec.robustness_samples`` test samples, by default the method's count,
    else 500 on CUDA and 128 on the CPU; ``after`` is ``None`` with a
    ``reason`` when there is no model to attack; FRoC's S_R under PGD is
    copied to ``summary.before.s_r`` / ``summary.after.s_r``, the one S_R of
    the result, named by ``summary.<stage>.s_r_threat_model``) and ``splits``
    ``{"train", "val", "test": {"before", "after"}}``: audits without
    bootstrap of the splits the dataset has, on at most ``spec.split_samples``
    rows each, so a gap that closes on train but not on test shows. ``slices``
    holds the top slices of the before and after decisions on the same test rows
    and what became of the worst slice before (see :mod:`fairaudit.slices.compare`;
    metric accuracy, depth 2, 200 resamples, every attribute but the target, seeded
    by ``spec.seed``, from the audits' predictions), or ``reason`` where they could not be computed.
    """
    from fairaudit.audit import audit_predictions, run_audit
    from fairaudit.data import load_dataset
    from fairaudit.device import resolve_device
    from fairaudit.loading import resolve_model
    from fairaudit.metrics.report import to_json_types
    from fairaudit.mitigation.base import MethodContext, get_method, make_config

    start = time.perf_counter()
    timings: dict[str, float] = {}
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    def check_stop() -> None:
        if should_stop():
            raise JobCancelled(f"run '{run_id}' was cancelled.")

    method_cls = get_method(spec.method)
    config = make_config(method_cls, spec.settings)
    device = resolve_device(spec.device)
    emit({"phase": LOADING, "fraction": 0.0})
    test_ds = load_dataset(spec.dataset, "test", spec.target, spec.sensitive, spec.data_dir, **spec.data_options)
    source: dict[str, str] = {}
    model, description = resolve_model(spec.model, test_ds, arch=spec.arch, data_options=spec.data_options,
                                       data_dir=spec.data_dir, device=device, allow_torchscript=spec.allow_torchscript,
                                       progress=lambda e: emit({**_scalars(e), "phase": LOADING, "fraction": 0.0}),
                                       source=source)
    check_model_file(source, model_sha256, run_id)
    emit({"event": "model_loaded", "phase": LOADING, "fraction": 0.0, "model_sha256": source["sha256"]})
    model = model.to(device).eval()
    timings["load"] = time.perf_counter() - start
    artifacts: dict[str, str] = {}
    meta = {"model": description, "data_options": spec.data_options, "run_id": run_id}
    check_stop()

    t = time.perf_counter()
    before_preds = None
    if before is None:
        emit({"phase": BEFORE, "fraction": 0.0})
        report, preds = run_audit(test_ds, model, n_boot=spec.n_boot, seed=spec.seed, device=device,
                                  progress=lambda done, total: emit({"phase": BEFORE,
                                                                     "fraction": BEFORE_END * done / total}),
                                  meta={**meta, "stage": "before"})
        before = report.to_dict()
        before_preds = preds
        artifacts["before_predictions"] = str(_publish(workdir, "before_predictions", preds.save, fence))
        emit({"event": "before_audit", "phase": BEFORE, "fraction": BEFORE_END, "report": before})
    timings["before_audit"] = time.perf_counter() - t
    check_stop()

    # Robustness and the other splits are measured on the deployed model before the method runs: some
    # methods fine-tune ``ctx.model`` in place.
    t = time.perf_counter()
    threat = _threat_model(method_cls, config, spec, device)
    robustness = {"before": None, "after": None, "threat_model": threat.resolved(test_ds.kind).to_dict()}
    attacked_samples = threat.samples != 0
    if attacked_samples:
        robustness["before"] = _robustness(model, test_ds, threat, spec, device, lambda done, total: check_stop())
        robustness["threat_model"] = robustness["before"]["threat_model"]
    else:
        robustness["reason"] = ("turned off (robustness_samples = 0)" if spec.robustness_samples == 0
                                else f"turned off by method '{spec.method}' (eval_robustness = false)")
    extra_splits = _extra_splits(spec, test_ds)
    splits = {name: {"before": _split_audit(ds, spec, device, model=model)} for name, ds in extra_splits.items()}
    timings["before_extras"] = time.perf_counter() - t
    check_stop()

    def method_progress(event: dict) -> None:
        fraction = min(1.0, max(0.0, float(event.get("fraction", 0.0))))
        emit({**event, "phase": MITIGATING, "fraction": BEFORE_END + (METHOD_END - BEFORE_END) * fraction})
        check_stop()

    t = time.perf_counter()
    seed_everything(spec.seed, device)
    ctx = MethodContext(model=model, dataset=spec.dataset, target=test_ds.target, sensitive=list(test_ds.sensitive),
                        data_options=dict(spec.data_options), data_dir=spec.data_dir, device=device, workdir=workdir,
                        progress=method_progress, should_stop=should_stop,
                        checkpoint_path=workdir / "checkpoint.pt", resume=bool(resume), seed=spec.seed)
    emit({"phase": MITIGATING, "fraction": BEFORE_END})
    result = method_cls().run(ctx, config)
    timings["method"] = time.perf_counter() - t
    check_stop()

    t = time.perf_counter()
    emit({"phase": AFTER, "fraction": METHOD_END})
    after_meta = {**meta, "stage": "after", "method": spec.method}
    if result.after_model is not None:
        report, preds = run_audit(test_ds, result.after_model, n_boot=spec.n_boot, seed=spec.seed, device=device,
                                  progress=lambda done, total: emit({"phase": AFTER, "fraction": METHOD_END + (
                                      1 - METHOD_END) * done / total}), meta=after_meta)
        if "model" not in result.artifacts:
            artifacts["model"] = _save_after_model(result.after_model, workdir, spec, test_ds, fence)
    elif result.after_predictions is not None:
        preds = result.after_predictions(test_ds)
        report = audit_predictions(preds, n_boot=spec.n_boot, seed=spec.seed, device=device, meta=after_meta)
    else:
        raise FairauditError(f"method '{spec.method}' returned neither a model nor predictions to audit.")
    after = report.to_dict()
    artifacts["after_predictions"] = str(_publish(workdir, "after_predictions", preds.save, fence))
    timings["after_audit"] = time.perf_counter() - t
    t = time.perf_counter()
    slices = _slices(test_ds, before_preds, preds, workdir, spec, device)
    timings["slices"] = time.perf_counter() - t
    check_stop()
    t_extras = time.perf_counter()
    if attacked_samples:
        # A post-processor (e.g. group thresholds) is attacked through the model whose scores it reads.
        attacked = (result.after_model if result.after_model is not None
                    else getattr(result.after_predictions, "model", None))
        if attacked is None:
            robustness["reason"] = ("the method returned predictions without the model behind them, so there is "
                                    "nothing to attack")
        else:
            postprocess = None if result.after_model is not None else result.after_predictions
            robustness["after"] = _robustness(attacked, test_ds, threat, spec, device,
                                              lambda done, total: check_stop(), postprocess=postprocess)
    for name, ds in extra_splits.items():
        splits[name]["after"] = _split_audit(ds, spec, device, model=result.after_model,
                                             predictions=result.after_predictions)
    splits["test"] = {"before": before, "after": after}
    timings["after_extras"] = time.perf_counter() - t_extras
    timings["total"] = time.perf_counter() - start
    artifacts.update({k: str(v) for k, v in result.artifacts.items()})
    if ctx.checkpoint_path.exists():
        artifacts.setdefault("checkpoint", str(ctx.checkpoint_path))
    artifacts["result"] = str(workdir / "result.json")

    output = to_json_types({
        "run_id": run_id, "method": spec.method, "dataset": spec.dataset, "model": spec.model,
        "model_description": description, "model_sha256": source["sha256"], "config": dataclasses.asdict(config),
        "spec": spec.to_dict(),
        **run_metadata(spec.seed, device), "splits_used": _splits_used(ctx, bool(attacked_samples)),
        "before": before, "after": after,
        "summary": {"before": {**_summary(before), "s_r": _s_r(robustness["before"]),
                               "s_r_threat_model": threat.name},
                    "after": {**_summary(after), "s_r": _s_r(robustness["after"]),
                              "s_r_threat_model": threat.name}},
        "robustness": robustness, "splits": splits, "slices": slices,
        "artifacts": artifacts, "stats": result.stats, "history": result.history,
        "seconds": timings["total"], "timings": timings, "resumed": bool(resume),
        "resumed_from": ctx.resumed_from,
    })
    _publish(workdir, "result.json", lambda path: path.write_text(json.dumps(output, indent=2, allow_nan=False)),
             fence)
    emit({"phase": "done", "fraction": 1.0})
    return output


def _slices(test_ds, before_preds, after_preds, workdir: Path, spec: JobSpec, device) -> dict:
    """The top slices before and after on the test rows (:func:`fairaudit.slices.compare.before_after_slices`).

    They reuse the predictions of the two test audits (no model runs again): a resumed run reads its
    stored *before* predictions. Slices are over every attribute the test split has
    (:func:`fairaudit.slices.dataset_attributes`) but the target, seeded by the run's seed. When they cannot be computed
    the block is :func:`~fairaudit.slices.compare.unavailable` with the reason.
    """
    from fairaudit.audit.inference import Predictions
    from fairaudit.slices import dataset_attributes
    from fairaudit.slices.compare import before_after_slices, unavailable

    if before_preds is None:
        stored = workdir / "before_predictions.npz"
        if not stored.is_file():
            return unavailable("the stored before audit of this resumed run has no predictions file to slice.")
        before_preds = Predictions.load(stored)
    try:
        attributes = dataset_attributes(test_ds, before_preds.indices)
        return before_after_slices(before_preds, after_preds, attributes, seed=spec.seed, device=device,
                                   left_out=[test_ds.target])
    except FairauditError as exc:
        return unavailable(str(exc))


def _splits_used(ctx, attacked: bool) -> dict[str, str]:
    """Which split each stage of a run used: the method's own (``fit`` and any other) and the job's audits."""
    used = {**ctx.splits_used, "before_audit": "test", "after_audit": "test"}
    if attacked:
        used["robustness"] = "test"
    return used


ROBUSTNESS_SAMPLES = {"cuda": 500, "cpu": 128}  # attacked test samples when the job does not say


def _threat_model(method_cls, config, spec: JobSpec, device):
    """The threat model of the job's S_R: the spec's, else the method's own (or the default, PGD-10 with a
    random start on the numeric features against the true labels, on 500 / 128 rows on CUDA / CPU), with the
    job's ``robustness_eps`` and ``robustness_samples`` where set."""
    from fairaudit.robustness import ThreatModel

    threat = ThreatModel.from_dict(spec.threat_model) if spec.threat_model else method_cls().threat_model(config)
    if threat is None:
        threat = ThreatModel(samples=ROBUSTNESS_SAMPLES.get(device.type, ROBUSTNESS_SAMPLES["cpu"]))
    changes = {}
    if spec.robustness_eps is not None:
        changes.update(eps=float(spec.robustness_eps), step_size=None)
    if spec.robustness_samples is not None:
        changes["samples"] = spec.robustness_samples
    return dataclasses.replace(threat, **changes)


def _robustness(model, test_ds, threat, spec: JobSpec, device, progress, postprocess=None) -> dict:
    """FGSM and PGD per group within ``threat`` on a seeded subsample of the test split
    (see :mod:`fairaudit.robustness`)."""
    from fairaudit.robustness import RobustnessAuditor

    auditor = RobustnessAuditor.from_threat_model(threat, ("fgsm", "pgd"), seed=spec.seed, device=device)
    return auditor.audit(model, test_ds, postprocess=postprocess, progress=progress).to_dict()


def _s_r(block: dict | None) -> float | None:
    """FRoC's S_R (Eq. 8) under the strongest attack of a robustness block (PGD)."""
    if not block:
        return None
    return block["s_r"][list(block["adversarial"])[-1]]


def _extra_splits(spec: JobSpec, test_ds) -> dict:
    """Seeded subsamples (at most ``spec.split_samples`` rows) of the train and validation splits that exist."""
    from fairaudit.data import load_dataset
    from fairaudit.data.registry import get_spec
    from fairaudit.robustness import sample_rows

    if not spec.split_samples:
        return {}
    available = get_spec(spec.dataset).splits
    return {name: sample_rows(load_dataset(spec.dataset, name, test_ds.target, list(test_ds.sensitive),
                                           spec.data_dir, **spec.data_options), spec.split_samples, spec.seed)
            for name in ("train", "val") if name in available}


def _split_audit(ds, spec: JobSpec, device, *, model=None, predictions=None) -> dict:
    """Audit of one extra split without bootstrap (point estimates, for the train / val / test comparison)."""
    from fairaudit.audit import audit_predictions, run_audit

    meta = {"split": ds.split, "rows": len(ds), "subsampled": hasattr(ds, "source_rows")}
    if model is not None:
        report, _ = run_audit(ds, model, n_boot=0, seed=spec.seed, device=device, meta=meta)
    else:
        report = audit_predictions(predictions(ds), n_boot=0, seed=spec.seed, device=device, meta=meta)
    return report.to_dict()


def _save_after_model(model, workdir: Path, spec: JobSpec, dataset, fence: Fence) -> str | None:
    from fairaudit.models.io import save_checkpoint

    info = {"dataset": spec.dataset, "target": dataset.target, "sensitive": list(dataset.sensitive),
            "class_names": dataset.class_names, "data_options": spec.data_options,
            "mitigation": {"method": spec.method, "settings": spec.settings, "seed": spec.seed}}

    def write(path: Path) -> Path | None:
        try:
            return save_checkpoint(model.cpu(), path, extra=info)
        except FairauditError:  # e.g. a TorchScript model: audited, not saved
            return None

    path = _publish(workdir, "after_model.safetensors", write, fence)
    return str(path) if path.exists() else None


class Recorder:
    """Turns the events of one run into registry writes (throttled) and forwards them to ``callback``.

    With ``lease`` every write is conditioned on it, and the first event, write
    or cancel poll after the lease was lost raises :class:`LeaseLost`.
    """

    def __init__(self, registry: JobRegistry, run_id: str, callback: Emit | None = None,
                 lease: Lease | None = None):
        self.registry, self.run_id, self.callback, self.lease = registry, run_id, callback, lease
        self.step = registry.next_step(run_id)
        self._last_write = 0.0
        self._phase: str | None = None
        self._stop_checked = 0.0
        self._stopped = False

    def _held(self) -> None:
        if self.lease is not None and self.lease.lost:  # found by the heartbeat thread
            raise self.registry._lost(self.lease)

    def __call__(self, event: dict) -> None:
        self._held()
        now = time.monotonic()
        phase = event.get("phase", self._phase)
        if event.get("event") == "before_audit":
            report = event["report"]
            self.registry.update_fields(self.run_id, lease=self.lease, before=report,
                                        summary={"before": _summary(report)})
        if event.get("event") == "model_loaded":
            self.registry.update_fields(self.run_id, lease=self.lease, model_sha256=event["model_sha256"])
        is_epoch = phase == MITIGATING and event.get("event") == "epoch"
        if is_epoch:
            self._metrics(event, "epoch")
        if is_epoch or phase != self._phase or now - self._last_write >= WRITE_INTERVAL:
            if phase == MITIGATING and event.get("event") == "step":
                self._metrics(event, "step")
            self.registry.update_progress(self.run_id, event.get("fraction", 0.0), _scalars(event), phase,
                                          lease=self.lease)
            self._last_write, self._phase = now, phase
        if self.callback is not None:
            self.callback(event)

    def _metrics(self, event: dict, kind: str) -> None:
        epoch = event.get("epoch")
        rows = [(self.step, epoch if isinstance(epoch, int) else None, name, float(value))
                for name, value in event.items()
                if name not in _EVENT_KEYS_NOT_METRICS and isinstance(value, (int, float))
                and not isinstance(value, bool)]
        if rows:
            self.registry.append_metrics(self.run_id, rows, kind, lease=self.lease)
            self.step += 1

    def should_stop(self) -> bool:
        """The run's cancel flag, read at most every :data:`STOP_POLL_INTERVAL` seconds (with the lease check)."""
        self._held()
        now = time.monotonic()
        if not self._stopped and now - self._stop_checked >= STOP_POLL_INTERVAL:
            self._stop_checked = now
            self._stopped = self.registry.cancel_requested(self.run_id, lease=self.lease)
        return self._stopped


class Heartbeat:
    """A daemon thread that calls ``beat()`` every ``every`` seconds (default :func:`heartbeat_seconds`) while a
    process works; it stops for good when ``beat`` raises :class:`LeaseLost`."""

    def __init__(self, beat: Callable[[], None], every: float | None = None):
        self._beat, self._every = beat, heartbeat_seconds() if every is None else every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fairaudit-heartbeat", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._beat()
            except LeaseLost:  # the lease is marked lost; the working thread stops at its next event
                return
            except Exception:  # a locked database now and then must not kill the thread
                pass

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def record_result(registry: JobRegistry, run_id: str, result: dict, lease: Lease | None = None) -> None:
    fields = {k: result[k] for k in ("before", "after", "summary", "artifacts", "stats", "history", "versions",
                                     "timings", "seconds")}
    registry.set_status(run_id, DONE, lease=lease, progress=1.0, phase="done",
                        result_path=result["artifacts"].get("result"), device=result["device"],
                        model_sha256=result.get("model_sha256"), message=None, traceback=None, **fields)


def record_failure(registry: JobRegistry, run_id: str, exc: BaseException, tb: str | None = None,
                   lease: Lease | None = None) -> str:
    """Record why a run stopped; returns the status written. With ``lease``, only while it is current
    (else :class:`LeaseLost`)."""
    if isinstance(exc, JobCancelled):
        registry.set_status(run_id, CANCELLED, lease=lease, message=str(exc), phase="cancelled")
        return CANCELLED
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        registry.set_status(run_id, INTERRUPTED, lease=lease, phase="interrupted",
                            message="interrupted: its process was stopped; resume it to continue from its last "
                                    "checkpoint.")
        return INTERRUPTED
    message = str(exc) if isinstance(exc, FairauditError) else f"{type(exc).__name__}: {exc}"
    registry.set_status(run_id, FAILED, lease=lease, message=message, traceback=tb or traceback.format_exc(),
                        phase="failed")
    return FAILED


def run_job(job: str | JobSpec, progress: Emit | None = None, *, registry: JobRegistry | None = None,
            lease: Lease | None = None) -> dict:
    """Execute a run in this process and return its result JSON.

    ``job`` is a :class:`JobSpec` (recorded as a new run with backend
    ``foreground``, as the CLI does) or the id of a run that is queued, or
    already claimed by this process (as workers do, passing the ``lease``
    their claim returned). ``progress`` receives every event (see
    :func:`execute`). Errors are recorded in the registry (``failed``,
    ``cancelled`` or ``interrupted``) and raised again; a lost lease raises
    :class:`~fairaudit.jobs.registry.LeaseLost` and records nothing (the run
    belongs to its new holder).
    """
    registry = registry or JobRegistry()
    pid = os.getpid()
    if isinstance(job, JobSpec):
        config = resolved_config(job)
        run_id = registry.create_run(job, config=config, backend="foreground", status=RUNNING, worker_pid=pid)
        lease = registry.current_lease(run_id)
    else:
        run_id = job
        lease = lease or _take(registry, run_id, pid)
    run = registry.get(run_id)
    if run["lease_token"] != lease.token:
        raise registry._lost(lease)
    workdir = run_dir(run_id)
    registry.update_fields(run_id, lease=lease, workdir=str(workdir), versions=library_versions())
    recorder = Recorder(registry, run_id, progress, lease)
    try:
        with Heartbeat(lambda: registry.heartbeat(run_id, lease)):
            spec = JobSpec.from_dict(run["spec"], run.get("config"))
            result = execute(spec, run_id, workdir, resume=run["resume"], before=run["before"], emit=recorder,
                             should_stop=recorder.should_stop, fence=lambda: registry.fenced(lease),
                             model_sha256=run["model_sha256"] if run["before"] is not None else None)
    except LeaseLost:
        raise
    except BaseException as exc:
        record_failure(registry, run_id, exc, lease=lease)  # raises LeaseLost if the run was taken over
        raise
    record_result(registry, run_id, result, lease)
    return result


def _take(registry: JobRegistry, run_id: str, pid: int) -> Lease:
    """The lease of a queued run (claimed now) or of a run this process already holds."""
    run = registry.get(run_id)
    if run["status"] == QUEUED:
        lease = registry.claim(run_id, pid)
        if lease is not None:
            return lease
        run = registry.get(run_id)
    if run["status"] == RUNNING and run["lease_owner"] == owner_id(pid):
        return Lease(run_id, run["lease_owner"], run["lease_token"])
    raise FairauditError(f"run '{run_id}' is {run['status']}" + (
        f" in process {run['worker_pid']}" if pid_alive(run["worker_pid"]) else "") + "; it cannot start.")


def resolved_config(spec: JobSpec) -> dict:
    """The method configuration a spec runs with (its settings over the method's current defaults), as JSON."""
    from fairaudit.metrics.report import to_json_types

    return to_json_types(dataclasses.asdict(spec.config()))
