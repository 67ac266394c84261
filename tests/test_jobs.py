"""The job system: registry, in-process runs, CLI, detached workers, cancel, kill/resume, concurrency, Ray."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import threading
import time
import types
from pathlib import Path

import pytest
import torch

from fairaudit.cli import main
from fairaudit.errors import FairauditError
from fairaudit.jobs import (JobRegistry, JobSpec, cancel, get_run, list_runs, resume, run_job, start_workers, submit,
                            wait)
from fairaudit.jobs import worker as worker_module

RESULT_KEYS = {"run_id", "method", "config", "before", "after", "artifacts", "seconds", "stats", "history"}


def _spec(model, **settings):
    return JobSpec("noop_finetune", "adult", model=model, device="cpu", settings=settings, n_boot=50)


def _wait_until(predicate, timeout=60.0, poll=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError("condition not reached in time")


def _epochs_recorded(run_id):
    return [m["epoch"] for m in get_run(run_id)["metrics"] if m["name"] == "loss"]


# ---------------------------------------------------------------------------- registry and specs

def test_registry_round_trip(home, tiny_model):
    registry = JobRegistry(home / "r.sqlite")
    spec = _spec(tiny_model, epochs="4", lr="0.01")
    assert spec.settings == {"epochs": 4, "lr": 0.01}  # coerced on creation
    a = registry.create_run(spec, config={"epochs": 4})
    b = registry.create_run(spec, config={"epochs": 4})
    run = registry.get(a)
    assert (run["status"], run["method"], run["dataset"], run["progress"]) == ("queued", "noop_finetune", "adult", 0)
    assert run["spec"]["settings"] == {"epochs": 4, "lr": 0.01} and run["config"] == {"epochs": 4}
    assert JobSpec.from_dict(run["spec"]) == spec

    assert registry.claim_next(pid=111).run_id == a  # oldest first, each claimed once
    assert registry.claim_next(pid=222).run_id == b
    assert registry.claim_next(pid=333) is None
    assert registry.get(a)["worker_pid"] == 111 and registry.get(a)["attempts"] == 1

    registry.update_progress(a, 0.25, {"event": "epoch", "epoch": 1, "loss": 0.5}, "mitigating")
    registry.append_metrics(a, [(0, 1, "loss", 0.5), (0, 1, "acc", 0.8)])
    registry.append_metric(a, 1, 2, "loss", 0.4)
    run = registry.get(a)
    assert run["progress"] == 0.25 and run["phase"] == "mitigating" and run["event"]["loss"] == 0.5
    assert [(m["step"], m["epoch"], m["name"], m["value"]) for m in run["metrics"]] == [
        (0, 1, "loss", 0.5), (0, 1, "acc", 0.8), (1, 2, "loss", 0.4)]
    assert registry.next_step(a) == 2

    registry.set_status(a, "done", before={"overall": {"accuracy": 0.75}}, seconds=1.5)
    run = registry.get(a)
    assert run["status"] == "done" and run["before"]["overall"]["accuracy"] == 0.75
    assert run["finished"] >= run["created"]
    with pytest.raises(FairauditError, match="is done; only failed, cancelled, interrupted runs can be resumed"):
        registry.reopen(a)
    assert registry.request_cancel(b) == "running" and registry.cancel_requested(b)
    listed = registry.list(dataset="adult")
    assert [r["id"] for r in listed] == [b, a] and "before" not in listed[0]
    assert registry.list(dataset="celeba") == []
    with pytest.raises(FairauditError, match="there is no run 'nope'"):
        registry.get("nope")


def test_dead_worker_marks_run_interrupted(home, tiny_model):
    registry = JobRegistry()
    run_id = registry.create_run(_spec(tiny_model), config={})
    dead = subprocess_pid_that_exited()
    assert registry.claim_next(pid=dead).run_id == run_id
    alive = registry.create_run(_spec(tiny_model), config={})
    registry.claim(alive, os.getpid())
    assert registry.mark_interrupted() == [run_id]
    assert get_run(run_id)["status"] == "interrupted" and "worker process died" in get_run(run_id)["message"]
    assert get_run(alive)["status"] == "running"


def subprocess_pid_that_exited() -> int:
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "nope"}, "unknown mitigation method 'nope'; available:"),
    ({"settings": {"bogus": 1}}, "method 'noop_finetune' has no setting 'bogus'; settings: epochs"),
    ({"settings": {"epochs": "many"}}, "setting 'epochs' of 'noop_finetune' expects a int, got 'many'"),
    ({"settings": {"epochs": "0"}}, "setting 'epochs' of 'noop_finetune' must be >= 1, got 0"),
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
    ({"data_options": {"colour": "red"}}, "dataset 'adult' has no option 'colour'"),
    ({"model": "missing.safetensors"}, "model file 'missing.safetensors' does not exist"),
    ({"device": "tpu"}, "unsupported device 'tpu'"),
])
def test_bad_spec_is_rejected_with_a_specific_message(home, tiny_model, kwargs, message):
    args = {"method": "noop_finetune", "dataset": "adult", "model": tiny_model, **kwargs}
    with pytest.raises(FairauditError) as info:
        JobSpec(**args)
    assert message in str(info.value)


# ---------------------------------------------------------------------------- in-process execution

def test_run_job_records_before_after_and_epoch_metrics(home, tiny_model):
    from fairaudit.audit import run_audit
    from fairaudit.data import load_dataset
    from fairaudit.models.io import load_model

    events = []
    result = run_job(_spec(tiny_model, epochs=3, steps=4, lr=0.01), progress=events.append)
    assert RESULT_KEYS <= set(result)
    run = get_run(result["run_id"])
    assert run["status"] == "done" and run["progress"] == 1.0 and run["worker_pid"] == os.getpid()
    assert run["backend"] == "foreground" and run["versions"]["torch"] == torch.__version__

    # The "before" audit is the deployed model's, the "after" one the fine-tuned model's.
    test = load_dataset("adult", "test")
    direct, _ = run_audit(test, load_model(tiny_model), n_boot=0, device="cpu")
    assert result["before"]["overall"]["accuracy"] == pytest.approx(direct.overall["accuracy"])
    assert result["before"]["disparities"]["deo"] == pytest.approx(direct.disparities["deo"])
    after_model, _ = run_audit(test, load_model(result["artifacts"]["model"]), n_boot=0, device="cpu")
    assert result["after"]["overall"]["accuracy"] == pytest.approx(after_model.overall["accuracy"])
    assert result["after"]["overall"]["accuracy"] != result["before"]["overall"]["accuracy"]
    assert run["before"] == result["before"] and run["after"] == result["after"]
    assert run["summary"]["after"]["deo"] == pytest.approx(result["after"]["disparities"]["deo"])

    # One metrics row per epoch, equal to the returned history; progress reached 1 in order.
    losses = [(m["epoch"], m["value"]) for m in run["metrics"] if m["name"] == "loss"]
    assert losses == [(h["epoch"], pytest.approx(h["loss"])) for h in result["history"]] and len(losses) == 3
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {e["phase"] for e in events} >= {"loading", "auditing before", "mitigating", "auditing after"}
    assert json.loads((home / "runs" / result["run_id"] / "result.json").read_text()) == result
    assert torch.load(result["artifacts"]["checkpoint"], weights_only=True)["epoch"] == 3


def test_post_processing_result_and_failures_are_recorded(home, tiny_model):
    result = run_job(_spec(tiny_model, epochs=1, steps=2, post=True))
    assert "model" not in result["artifacts"] and result["after"]["overall"]["n"] == result["before"]["overall"]["n"]

    with pytest.raises(FairauditError, match="the labels look odd."):
        run_job(_spec(tiny_model, fail="the labels look odd."))
    failed = list_runs(status="failed")[0]
    assert failed["message"] == "the labels look odd."
    with pytest.raises(FairauditError, match="setting 'lr' of 'noop_finetune'"):
        run_job(_spec(tiny_model, lr=-1.0))  # refused before a run is recorded
    assert list_runs(status="failed")[0]["message"] == "the labels look odd."
    with pytest.raises(RuntimeError):
        run_job(_spec(tiny_model, crash="index 7 is out of range"))  # a bug: type + message + traceback are kept
    crashed = get_run(list_runs(status="failed")[0]["id"])
    assert crashed["message"].startswith("RuntimeError: index 7 is out of range")
    assert "Traceback" in crashed["traceback"]


# ---------------------------------------------------------------------------- CLI

def test_cli_mitigate_and_runs(home, tiny_model, tmp_path, capsys):
    out = tmp_path / "mitigated.json"
    code = main(["mitigate", "noop_finetune", "--dataset", "adult", "--model", tiny_model, "--set", "epochs=2",
                 "--set", "steps=3", "--device", "cpu", "--seed", "3", "--bootstrap", "50", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert RESULT_KEYS <= set(data)
    assert data["method"] == "noop_finetune" and data["config"]["epochs"] == 2 and data["seed"] == 3
    assert {"overall", "groups", "disparities", "ci", "meta"} <= set(data["before"]) <= set(data["after"])
    assert data["before"]["ci"]["deo"] is not None  # --bootstrap 50 gives intervals
    assert len(data["history"]) == 2 and data["seconds"] > 0
    assert f"run {data['run_id']}" in capsys.readouterr().out

    listing = tmp_path / "runs.json"
    assert main(["runs", "--json", str(listing)]) == 0
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith(data["run_id"]))
    deo = data["before"]["disparities"]["deo"], data["after"]["disparities"]["deo"]
    assert "done" in row and f"{deo[0]:.4f} -> {deo[1]:.4f}" in row
    runs = json.loads(listing.read_text())["runs"]
    assert [r["id"] for r in runs] == [data["run_id"]]
    assert runs[0]["summary"]["after"]["deo"] == pytest.approx(deo[1])


@pytest.mark.parametrize("argv, message", [
    (["mitigate", "nope", "--dataset", "adult"], "unknown mitigation method 'nope'"),
    (["mitigate", "noop_finetune", "--dataset", "adult", "--set", "bogus=1"], "has no setting 'bogus'"),
    (["mitigate", "noop_finetune", "--dataset", "adult", "--set", "epochs"], "--set expects key=value"),
    (["mitigate", "noop_finetune", "--dataset", "adult", "--set", "epochs=0"], "must be >= 1, got 0"),
    (["runs", "--resume", "nope"], "there is no run 'nope'"),
])
def test_cli_bad_input_exits_2(home, tiny_model, tmp_path, capsys, argv, message):
    out = tmp_path / "x.json"
    assert main(argv + (["--model", tiny_model, "--json", str(out)] if argv[0] == "mitigate" else [])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not out.exists()


# ---------------------------------------------------------------------------- background workers

def test_worker_pool_runs_concurrent_submissions_and_cancels(home, tiny_model, monkeypatch):
    monkeypatch.setenv("FAIRAUDIT_WORKER_IDLE", "20")
    # Two sessions submitting at the same moment: nothing is lost, and only one worker (FAIRAUDIT_WORKERS=1)
    # is started although both found none running.
    barrier = threading.Barrier(2)
    ids: list[str] = []

    def submit_two():
        barrier.wait()
        for _ in range(2):
            ids.append(submit(_spec(tiny_model, epochs=1, steps=2)))

    threads = [threading.Thread(target=submit_two) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slow = submit(_spec(tiny_model, epochs=200, steps=5, sleep=0.05))
    waiting = submit(_spec(tiny_model, epochs=1))  # behind `slow` on the only worker
    assert len(set(ids)) == 4 and len(worker_module._CHILDREN) == 1

    runs = [wait(run_id, timeout=90) for run_id in ids]
    assert [r["status"] for r in runs] == ["done"] * 4, [r["message"] for r in runs]
    assert all(r["after"]["overall"]["n"] == r["before"]["overall"]["n"] > 0 for r in runs)
    assert {r["worker_pid"] for r in runs} == {worker_module._CHILDREN[0].pid} != {os.getpid()}

    assert cancel(waiting) == "cancelled" and get_run(waiting)["status"] == "cancelled"  # queued: at once
    _wait_until(lambda: _epochs_recorded(slow), timeout=60)
    assert cancel(slow) == "running"  # running: stops at its next step
    stopped = wait(slow, timeout=30)
    assert stopped["status"] == "cancelled" and stopped["message"] == f"run '{slow}' was cancelled."
    assert len(_epochs_recorded(slow)) < 200

    assert resume(waiting) == waiting  # a cancelled run can be resumed; the idle worker takes it
    assert wait(waiting, timeout=60)["status"] == "done"
    assert start_workers() == [] and len(worker_module._CHILDREN) == 1  # the pool is complete


def test_killed_worker_leaves_run_interrupted_and_resume_continues(home, tiny_model):
    run_id = submit(_spec(tiny_model, epochs=6, steps=4, sleep=0.1))
    _wait_until(lambda: len(_epochs_recorded(run_id)) >= 2, timeout=60)
    pid = get_run(run_id)["worker_pid"]
    os.kill(pid, signal.SIGKILL)
    interrupted = _wait_until(lambda: (r := get_run(run_id))["status"] == "interrupted" and r, timeout=10)
    assert "resume it" in interrupted["message"]
    saved = torch.load(home / "runs" / run_id / "checkpoint.pt", weights_only=True)["epoch"]
    assert saved >= 2

    assert resume(run_id, foreground=True) == run_id  # as `fairaudit runs --resume ID` does
    finished = get_run(run_id)
    assert finished["status"] == "done", finished["message"]
    assert finished["worker_pid"] == os.getpid() and finished["attempts"] == 2
    assert finished["stats"]["resumed_from_epoch"] == saved >= 2  # it went on from the checkpoint...
    assert finished["stats"]["epochs_trained"] == 6 - saved  # ...and did not start over
    recorded = json.loads(Path(finished["result_path"]).read_text())
    assert recorded["resumed_from"] == {"stage": 1, "epoch": saved}  # the run JSON says where it went on from
    assert [h["epoch"] for h in finished["history"]] == [1, 2, 3, 4, 5, 6]
    assert finished["before"] == interrupted["before"]  # the before audit is kept, not recomputed
    # Epoch rows before the kill stay; the resumed epochs add theirs (none is recorded twice).
    epochs = _epochs_recorded(run_id)
    assert {1, 2} | set(range(saved + 1, 7)) <= set(epochs) and len(epochs) == len(set(epochs))


# ---------------------------------------------------------------------------- Ray

class _FakeRay(types.ModuleType):
    """Just enough of Ray's API for the driver: tasks run in threads of this process."""

    class RayTaskError(Exception):
        def __init__(self, cause):
            super().__init__(f"task failed: {cause!r}")
            self.cause = cause

    class TaskCancelledError(Exception):
        pass

    class Queue:
        def __init__(self):
            self.items, self.lock = [], threading.Lock()

        def put(self, item):
            with self.lock:
                self.items.append(item)

        def size(self):
            return len(self.items)

        def get_nowait_batch(self, n):
            with self.lock:
                batch, self.items[:n] = self.items[:n], []
            return batch

    def __init__(self):
        super().__init__("ray")
        self.tasks, self.inits = [], []
        self.exceptions = types.SimpleNamespace(RayTaskError=self.RayTaskError,
                                                TaskCancelledError=self.TaskCancelledError)
        self.util = types.SimpleNamespace(queue=types.SimpleNamespace(Queue=self.Queue))

    def init(self, **kwargs):
        self.inits.append(kwargs)

    def shutdown(self):
        pass

    def cluster_resources(self):
        return {"CPU": 2.0}

    def remote(self, fn):
        fake = self

        class Remote:
            def options(self, **options):
                def launch(*args):
                    ref = {"done": threading.Event(), "options": options}

                    def body():
                        try:
                            ref["value"] = fn(*args)
                        except Exception as exc:
                            ref["error"] = fake.RayTaskError(exc)
                        ref["done"].set()

                    threading.Thread(target=body, daemon=True).start()
                    fake.tasks.append(ref)
                    return _Ref(ref)
                return types.SimpleNamespace(remote=launch)
        return Remote()

    def wait(self, refs, num_returns=1, timeout=None):
        refs[0].state["done"].wait(timeout)
        ready = [r for r in refs if r.state["done"].is_set()][:num_returns]
        return ready, [r for r in refs if r not in ready]

    def get(self, ref):
        if "error" in ref.state:
            raise ref.state["error"]
        return ref.state["value"]

    def cancel(self, ref):
        raise AssertionError("not cancelled in this test")


class _Ref:
    def __init__(self, state):
        self.state = state

    def __hash__(self):
        return id(self)


def test_ray_dispatch_with_a_fake_ray(home, tiny_model, monkeypatch):
    from fairaudit.jobs.ray_backend import drive

    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setitem(sys.modules, "ray.exceptions", fake.exceptions)
    monkeypatch.setitem(sys.modules, "ray.util", fake.util)
    monkeypatch.setitem(sys.modules, "ray.util.queue", fake.util.queue)
    good = submit(_spec(tiny_model, epochs=2, steps=2), ray_address="10.0.0.1:6379", start=False)
    bad = submit(_spec(tiny_model, fail="no such column."), ray_address="10.0.0.1:6379", start=False)
    local = submit(_spec(tiny_model), start=False)
    drive(JobRegistry(), "ray:10.0.0.1:6379", os.getpid(), idle=0.2)

    assert fake.inits[0]["address"] == "10.0.0.1:6379"
    assert fake.inits[0]["runtime_env"]["env_vars"]["FAIRAUDIT_TEST_METHODS"] == "1"
    assert [t["options"] for t in fake.tasks] == [{"num_cpus": 1, "num_gpus": 0}] * 2
    run = get_run(good)
    assert run["status"] == "done" and run["backend"] == "ray:10.0.0.1:6379" and run["after"] is not None
    assert [m["epoch"] for m in run["metrics"] if m["name"] == "loss"] == [1, 2]  # events came back
    assert get_run(bad)["status"] == "failed" and get_run(bad)["message"] == "no such column."
    assert get_run(local)["status"] == "queued"  # not the driver's business


def test_ray_backend_without_ray_fails_the_runs_clearly(home, tiny_model, monkeypatch):
    from fairaudit.jobs.ray_backend import drive

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    run_id = submit(_spec(tiny_model), ray_address="auto", start=False)
    drive(JobRegistry(), "ray:auto", os.getpid(), idle=0)
    run = get_run(run_id)
    assert run["status"] == "failed" and "pip install 'fairaudit[ray]'" in run["message"]


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_two_jobs_on_a_local_ray_instance(home, tiny_model):
    ids = [submit(_spec(tiny_model, epochs=2, steps=2), ray_address="local"),
           submit(_spec(tiny_model, fail="bad labels."), ray_address="local")]
    good, bad = [wait(run_id, timeout=240) for run_id in ids]
    assert good["status"] == "done", good["message"]
    assert good["backend"] == "ray:local" and good["after"]["overall"]["n"] == good["before"]["overall"]["n"]
    assert len([m for m in good["metrics"] if m["name"] == "loss"]) == 2
    assert bad["status"] == "failed" and bad["message"] == "bad labels."
