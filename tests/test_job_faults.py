"""Faults of the job system: a paused worker, lost leases, two processes racing on the demo-model cache."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from fairaudit.jobs import JobRegistry, JobSpec, LeaseLost, get_run, resume, run_job, submit, wait
from fairaudit.jobs import worker as worker_module
from tests.test_jobs import _wait_until

STALE = 4.0  # seconds without a heartbeat before a run counts as dead, in these tests


def _spec(model, seed=5, **settings):
    return JobSpec("noop_finetune", "adult", model=model, device="cpu", settings=settings, n_boot=20, seed=seed,
                   robustness_samples=0, split_samples=0)


def _epoch_rows(run_id):
    return [m for m in JobRegistry().metrics(run_id, "epoch") if m["name"] == "loss"]


def _child(pid):
    return next(p for p in worker_module._CHILDREN if p.pid == pid)


def _without_timings(report):
    return {k: v for k, v in report.items() if k != "meta"}


@pytest.fixture
def fast_heartbeats(home, monkeypatch):
    monkeypatch.setenv("FAIRAUDIT_STALE_SECONDS", str(STALE))
    monkeypatch.setenv("FAIRAUDIT_HEARTBEAT_SECONDS", "0.4")
    monkeypatch.setenv("FAIRAUDIT_WORKER_IDLE", "3")
    return home


def test_paused_worker_loses_its_lease_and_the_run_executes_once(fast_heartbeats, tiny_model):
    home, epochs = fast_heartbeats, 10
    spec = _spec(tiny_model, epochs=epochs, steps=4, sleep=0.1)
    run_id = submit(spec)
    _wait_until(lambda: len(_epoch_rows(run_id)) >= 2, timeout=90)
    paused = get_run(run_id)["worker_pid"]
    os.kill(paused, signal.SIGSTOP)  # the worker freezes mid-epoch, its heartbeat stops
    try:
        paused_at = time.time()
        interrupted = _wait_until(lambda: (r := get_run(run_id))["status"] == "interrupted" and r, timeout=STALE * 5)
        assert "stopped sending heartbeats" in interrupted["message"]
        written_by_paused = _epoch_rows(run_id)

        assert resume(run_id) == run_id  # queued again; a new worker starts because the paused one is silent
        _wait_until(lambda: (r := get_run(run_id))["status"] == "running" and r["worker_pid"] != paused, timeout=90)
        resumer = get_run(run_id)["worker_pid"]
        _wait_until(lambda: len(_epoch_rows(run_id)) > len(written_by_paused), timeout=90)  # the new one trains
    finally:
        os.kill(paused, signal.SIGCONT)  # the paused worker wakes up while the other one works on its run
    woke_at = time.time()
    finished = wait(run_id, timeout=120)
    assert finished["status"] == "done", finished["message"]
    exit_code = _child(paused).wait(timeout=60)

    # Exactly one execution is recorded: every epoch once, the paused worker's rows all from before the pause,
    # everything after it from the lease holder, whose result is the one on disk and in the registry.
    rows = _epoch_rows(run_id)
    assert [m["epoch"] for m in rows] == list(range(1, epochs + 1))
    log = (home / "logs" / "worker.log").read_text()
    assert f"worker {paused}: run {run_id}: run '{run_id}' was taken over by another worker" in log
    assert f"worker {paused}: run {run_id} done" not in log and exit_code == 0  # it stopped, quietly
    tokens = {m["lease_token"] for m in rows}
    old, new = written_by_paused[0]["lease_token"], finished["lease_token"]
    assert tokens == {old, new} and new > old
    assert [m for m in rows if m["lease_token"] == old] == written_by_paused
    late = [m for m in JobRegistry().metrics(run_id, None) if m["lease_token"] == old and m["time"] > paused_at]
    assert late == []  # not even a step row after the pause
    assert finished["worker_pid"] == resumer and finished["attempts"] == 2 and finished["finished"] > woke_at
    result = json.loads((home / "runs" / run_id / "result.json").read_text())
    assert result["after"] == finished["after"] and result["resumed"] is True
    assert [h["epoch"] for h in result["history"]] == list(range(1, epochs + 1))
    resumed_from = result["stats"]["resumed_from_epoch"]
    assert resumed_from >= len(written_by_paused) and result["stats"]["epochs_trained"] == epochs - resumed_from
    assert torch.load(home / "runs" / run_id / "checkpoint.pt", weights_only=True)["epoch"] == epochs

    # The same job and seed without interruption: the same deployed model, the same before audit, the same
    # losses up to the epoch it resumed from (data order after a resume is the seeding code's business).
    reference = run_job(spec)
    assert result["model_sha256"] == reference["model_sha256"]
    assert _without_timings(result["before"]) == _without_timings(reference["before"])
    assert [h["loss"] for h in result["history"][:resumed_from]] == [
        h["loss"] for h in reference["history"][:resumed_from]]
    assert len(reference["history"]) == len(result["history"])


def test_every_write_of_a_lost_lease_is_refused(home, tiny_model):
    registry = JobRegistry()
    run_id = registry.create_run(_spec(tiny_model), config={})
    first = registry.claim_next(pid=os.getpid())
    assert (first.run_id, first.token, first.owner.endswith(f":{os.getpid()}")) == (run_id, 1, True)
    registry.update_progress(run_id, 0.3, {"event": "step"}, "mitigating", lease=first)
    registry.append_metrics(run_id, [(0, 1, "loss", 0.7)], lease=first)

    registry.set_status(run_id, "interrupted")  # e.g. its process died
    second = registry.reopen(run_id, claim_pid=os.getpid() + 1)
    assert second.token > first.token and registry.current_lease(run_id) == second
    writes = {
        "progress": lambda: registry.update_progress(run_id, 0.9, lease=first),
        "heartbeat": lambda: registry.heartbeat(run_id, first),
        "metrics": lambda: registry.append_metrics(run_id, [(1, 2, "loss", 0.1)], lease=first),
        "status": lambda: registry.set_status(run_id, "done", lease=first),
        "cancel poll": lambda: registry.cancel_requested(run_id, lease=first),
        "artefact": lambda: _enter(registry.fenced(first)),
    }
    for name, write in writes.items():
        with pytest.raises(LeaseLost, match=f"run '{run_id}' was taken over by another worker"):
            write()
    assert first.lost and not second.lost
    run = registry.get(run_id)
    assert (run["status"], run["progress"]) == ("running", 0.3)
    assert [(m["epoch"], m["lease_token"]) for m in run["metrics"]] == [(1, 1)]
    registry.update_progress(run_id, 0.5, lease=second)  # the holder writes as before
    registry.set_status(run_id, "done", lease=second)
    assert registry.get(run_id)["status"] == "done"


def _enter(context):
    with context:
        pass


def test_a_run_marked_interrupted_revokes_the_lease(home, tiny_model, monkeypatch):
    monkeypatch.setenv("FAIRAUDIT_STALE_SECONDS", "1")
    registry = JobRegistry()
    run_id = registry.create_run(_spec(tiny_model), config={})
    lease = registry.claim(run_id, os.getpid())
    registry.update_fields(run_id, heartbeat=time.time() - 5)  # silent for 5 s
    assert registry.mark_interrupted() == [run_id]
    with pytest.raises(LeaseLost):
        registry.heartbeat(run_id, lease)  # a paused process that wakes up cannot revive the run
    assert registry.get(run_id)["status"] == "interrupted"


def test_a_foreground_run_that_loses_its_lease_stops_and_records_nothing(home, tiny_model):
    registry = JobRegistry()
    taken = {}

    def take_over(event):
        if event.get("event") == "epoch" and not taken:  # another process resumes the run under our feet
            registry.set_status(event_run_id(), "interrupted")
            taken["lease"] = registry.reopen(event_run_id(), claim_pid=os.getpid() + 1)

    def event_run_id():
        return registry.list(limit=1)[0]["id"]

    with pytest.raises(LeaseLost):
        run_job(_spec(tiny_model, epochs=3, steps=2), progress=take_over, registry=registry)
    run = registry.get(event_run_id())
    assert run["status"] == "running" and run["lease_token"] == taken["lease"].token  # left to its new holder
    assert [m["epoch"] for m in run["metrics"] if m["name"] == "loss"] == [1]
    folder = home / "runs" / run["id"]
    assert not (folder / "result.json").exists() and not list(folder.glob(".writing-*"))


def test_old_registry_gains_the_lease_columns(home, tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:  # the first schema: no lease or model hash columns
        conn.executescript("""
            CREATE TABLE runs (id TEXT PRIMARY KEY, method TEXT NOT NULL, dataset TEXT NOT NULL, model TEXT NOT NULL,
                status TEXT NOT NULL, phase TEXT, progress REAL NOT NULL DEFAULT 0, backend TEXT NOT NULL DEFAULT
                'local', spec TEXT NOT NULL, config TEXT NOT NULL, seed INTEGER NOT NULL, device TEXT, event TEXT,
                message TEXT, traceback TEXT, before TEXT, after TEXT, summary TEXT, artifacts TEXT, stats TEXT,
                history TEXT, versions TEXT, timings TEXT, workdir TEXT, result_path TEXT, worker_pid INTEGER,
                worker_host TEXT, heartbeat REAL, cancel_requested INTEGER NOT NULL DEFAULT 0,
                resume INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL,
                started REAL, finished REAL, seconds REAL);
            CREATE TABLE metrics (run_id TEXT NOT NULL, step INTEGER NOT NULL, epoch INTEGER, kind TEXT NOT NULL,
                name TEXT NOT NULL, value REAL, time REAL NOT NULL);
            INSERT INTO runs (id, method, dataset, model, status, spec, config, seed, created)
                VALUES ('old-run', 'erm', 'adult', 'demo', 'done', '{}', '{}', 0, 1.0);
            PRAGMA user_version = 1;
        """)
    registry = JobRegistry(path)
    run = registry.get("old-run")
    assert (run["status"], run["lease_token"], run["model_sha256"]) == ("done", 0, None)
    assert registry.metrics("old-run") == []


_MARKED_WRITER = """
import mmap, sqlite3, sys, time
marker_file = open(sys.argv[3], "r+b")
marker = mmap.mmap(marker_file.fileno(), 1)

class MarkedConnection(sqlite3.Connection):
    # marker[0] is 1 while this process is inside an SQLite write (a transaction or a single statement): a
    # pause there holds the database lock by SQLite's design. Closing a connection (which checkpoints the
    # log) counts as between writes, so a registry that opened and closed connections per call still fails.
    def execute(self, sql, *args):
        marker[0] = 1
        try:
            return super().execute(sql, *args)
        finally:
            if not self.in_transaction:
                marker[0] = 0

_connect = sqlite3.connect
sqlite3.connect = lambda *a, **k: _connect(*a, factory=MarkedConnection, **k)
from fairaudit.jobs.registry import JobRegistry
registry = JobRegistry(sys.argv[1])
while True:
    registry.heartbeat(sys.argv[2])
    registry.append_metrics(sys.argv[2], [(0, None, 'loss', 0.5)], 'step')
    time.sleep(0.002)
"""


def _stopped(pid):
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def test_a_process_paused_between_registry_writes_never_locks_the_others_out(home, tiny_model, monkeypatch,
                                                                              tmp_path):
    import random
    import subprocess
    import sys

    from fairaudit.jobs import registry as registry_module

    registry = JobRegistry()
    run_id = registry.create_run(_spec(tiny_model), config={})
    marker = tmp_path / "in_write"
    marker.write_bytes(b"\0")
    writer = subprocess.Popen([sys.executable, "-c", _MARKED_WRITER, str(registry.path), run_id, str(marker)],
                              env={**os.environ, "PYTHONPATH": os.getcwd()})
    monkeypatch.setattr(registry_module, "BUSY_TIMEOUT_MS", 1000)
    mine = JobRegistry(registry.path)  # a connection that gives up after 1 s
    rng = random.Random(0)
    between, locked_out = 0, 0
    try:
        _wait_until(lambda: mine.metrics(run_id, "step"), timeout=30)
        for _ in range(500):
            if between == 25:
                break
            time.sleep(rng.uniform(0.005, 0.05))
            os.kill(writer.pid, signal.SIGSTOP)  # frozen wherever it is, like a suspended machine
            try:
                _wait_until(lambda: _stopped(writer.pid), timeout=10)
                if marker.read_bytes() != b"\0":
                    continue  # frozen inside a write: SQLite holds its lock there by design
                between += 1
                try:
                    mine.update_progress(run_id, 0.5)
                except Exception:
                    locked_out += 1
            finally:
                os.kill(writer.pid, signal.SIGCONT)
    finally:
        writer.kill()
        writer.wait()
    assert between == 25
    assert locked_out == 0


# ---------------------------------------------------------------------------- the demo-model cache and model hashes

_DEMO_CLIENT = """
import json, sys, time
from pathlib import Path
from fairaudit import demo
from fairaudit.models.checkpoint_files import sha256
from fairaudit.train import TrainConfig

demo.DEMO_RECIPES["adult"] = {"arch": "mlp", "config": TrainConfig(epochs=1, max_steps=6, batch_size=128)}
while not Path(sys.argv[1]).exists():  # both processes ask at the same moment
    time.sleep(0.01)
trained = []

def progress(event):
    if not trained:  # training takes a while: the other process asks meanwhile
        trained.append(True)
        time.sleep(1.5)

model, path = demo.get_demo_model("adult", device="cpu", progress=progress)
print(json.dumps({"trained": bool(trained), "path": str(path), "sha256": sha256(path),
                  "weights": float(sum(p.double().sum() for p in model.parameters()))}))
"""


def test_two_processes_asking_for_the_demo_model_train_it_once(tmp_path):
    import subprocess
    import sys

    home, go = tmp_path / "home", tmp_path / "go"
    env = {**os.environ, "FAIRAUDIT_HOME": str(home), "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _DEMO_CLIENT, str(go)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(0.5)
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(o["trained"] for o in outputs) == [False, True]  # one trained, the other waited and loaded it
    assert outputs[0]["path"] == outputs[1]["path"] and outputs[0]["sha256"] == outputs[1]["sha256"]
    assert outputs[0]["weights"] == outputs[1]["weights"]
    from fairaudit.models.checkpoint_files import sha256

    files = sorted(p.name for p in (home / "models").iterdir())
    name = os.path.basename(outputs[0]["path"])
    assert files == [name, f"{name}.json", f"{name}.lock"]  # one model, its sidecar, the lock; no leftovers
    assert sha256(home / "models" / name) == outputs[0]["sha256"]


def _replace_weights(path, scale=1.01):
    """Write a different model to ``path`` (weights and sidecar consistent, so only the hash tells)."""
    from fairaudit.models.io import load_model, save_checkpoint

    model = load_model(path)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    save_checkpoint(model, path, extra={"dataset": "adult"})


def _copy_model(source, folder):
    import shutil

    folder.mkdir(exist_ok=True)
    target = folder / "deployed.safetensors"
    shutil.copy(source, target)
    shutil.copy(f"{source}.json", f"{target}.json")
    return str(target)


def test_runs_record_the_model_hash_and_refuse_a_changed_file(home, tiny_model, tmp_path):
    from fairaudit.jobs.artifacts import load_run_models
    from fairaudit.models.checkpoint_files import sha256

    path = _copy_model(tiny_model, tmp_path / "models")
    digest = sha256(Path(path))
    result = run_job(_spec(path, epochs=1, steps=2))
    assert result["model_sha256"] == digest == get_run(result["run_id"])["model_sha256"]
    assert json.loads((home / "runs" / result["run_id"] / "result.json").read_text())["model_sha256"] == digest
    assert load_run_models(result["run_id"], device="cpu").before is not None  # unchanged: fine

    _replace_weights(path)
    with pytest.raises(Exception) as info:
        load_run_models(result["run_id"], device="cpu")
    message = str(info.value)
    assert f"the model file '{path}' has changed since run '{result['run_id']}' recorded it" in message
    assert f"SHA-256 {digest[:12]}… then, {sha256(Path(path))[:12]}… now" in message and "\n" not in message


def test_resuming_a_run_whose_model_file_changed_is_refused(home, tiny_model, tmp_path):
    path = _copy_model(tiny_model, tmp_path / "models")

    def stop(event):
        if event.get("event") == "epoch":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(_spec(path, epochs=3, steps=2), progress=stop)
    run_id = JobRegistry().list(limit=1)[0]["id"]
    assert get_run(run_id)["status"] == "interrupted"
    _replace_weights(path)
    with pytest.raises(Exception, match=f"has changed since run '{run_id}' recorded it"):
        resume(run_id, foreground=True)
    run = get_run(run_id)
    assert run["status"] == "failed" and "restore that file, or start a new run" in run["message"]
    assert [m["epoch"] for m in run["metrics"] if m["name"] == "loss"] == [1]  # nothing trained on the new file
