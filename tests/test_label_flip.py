"""label_flip (thesis §6.6): random flips of the advantaged group's labels, drawn per epoch, narrow the
accuracy gap; massaging keeps its own name, and runs recorded under the old name still load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fairaudit.audit import run_audit
from fairaudit.data.base import TensorFairDataset
from fairaudit.errors import FairauditError
from fairaudit.mitigation import MethodContext, get_method, make_config, recorded_method
from fairaudit.mitigation.base import MitigationMethod, register_method, register_rename
from fairaudit.mitigation.baselines.label_flip import EpochFlips, advantaged_group
from fairaudit.models import build_model
from tests.tabular_fixtures import two_rules

pytestmark = pytest.mark.usefixtures("one_thread")

BUDGET = {"epochs": "3", "batch_size": "128", "lr": "0.005"}


class _Context(MethodContext):
    train: TensorFairDataset | None = None

    def load_split(self, split, stage="fit"):
        self.splits_used.setdefault(stage, split)
        return self.train


@pytest.fixture(scope="module")
def fixture():
    train, test = two_rules(2000, 0), two_rules(4000, 1)
    torch.manual_seed(0)
    deployed = build_model("mlp", 2, train.input_shape)
    from fairaudit.train import TrainConfig, fit

    fit(deployed, train, TrainConfig(epochs=3, batch_size=128, lr=2e-3), device="cpu")
    return train, test, deployed.eval()


def _run(name, fixture, tmp_path, settings):
    train, _, deployed = fixture
    ctx = _Context(model=deployed, dataset="adult", target="y", sensitive=["group"], data_options={},
                   data_dir=None, device=torch.device("cpu"), workdir=tmp_path, seed=0)
    ctx.train = train
    method = get_method(name)
    return method().run(ctx, make_config(method, settings))


def _report(result, fixture):
    return run_audit(fixture[1], result.after_model, n_boot=0, device="cpu")[0]


# ---------------------------------------------------------------------------- the flips

def test_flips_touch_only_the_chosen_group_and_are_drawn_again_every_epoch():
    targets = np.array([0, 1] * 50 + [1] * 20, dtype=np.int64)
    members = np.arange(100)  # the first 100 samples form the flipped group
    flips = EpochFlips(targets, members, 0.3, 2, seed=0)
    index = np.arange(len(targets))
    epochs = [flips.labels(index[:60]).tolist() + flips.labels(index[60:]).tolist() for _ in range(3)]
    changed = [np.flatnonzero(np.array(e) != targets) for e in epochs]
    for c in changed:
        assert len(c) == 30 and c.max() < 100  # exactly p of the group, nobody outside it
    assert not np.array_equal(changed[0], changed[1])  # a new draw each epoch
    assert np.array_equal(np.array(epochs[0])[changed[0]], 1 - targets[changed[0]])
    # A run resumed at epoch 2 flips what the uninterrupted run flipped in its epoch 2.
    resumed = EpochFlips(targets, members, 0.3, 2, seed=0, epoch=2)
    assert resumed.labels(index).tolist() == epochs[2]
    # Multiclass: a flipped label is always another class.
    many = EpochFlips(np.zeros(50, dtype=np.int64), np.arange(50), 1.0, 5, seed=0).labels(np.arange(50))
    assert (many != 0).all() and set(many.tolist()) <= {1, 2, 3, 4}
    assert EpochFlips(targets, members, 0.0, 2).labels(index).tolist() == targets.tolist()


def test_the_advantaged_group_is_the_most_accurate_one():
    assert advantaged_group({0: 0.81, 1: 0.93, 2: 0.93}) == 1


# ---------------------------------------------------------------------------- the effect

def test_label_flip_narrows_the_accuracy_gap_of_erm(fixture, tmp_path):
    erm = _report(_run("erm", fixture, tmp_path / "erm", BUDGET), fixture)
    result = _run("label_flip", fixture, tmp_path / "lf", {**BUDGET, "p": "0.3", "accuracy_split": "train"})
    report = _report(result, fixture)
    erm_acc = erm.groups_frame().set_index("group")["accuracy"]
    acc = report.groups_frame().set_index("group")["accuracy"]
    assert erm.disparities["aed"] > 0.05  # ERM leaves a gap to close
    assert report.disparities["aed"] < 0.5 * erm.disparities["aed"]
    assert acc["B"] > erm_acc["B"] + 0.02  # the disadvantaged group gains, not only A losing
    assert report.overall["accuracy"] > erm.overall["accuracy"] - 0.03
    assert result.stats["flip_group"] == "group=A"  # the majority, whose rule the shared model serves
    assert result.stats["flipped_per_epoch"] == round(0.3 * result.stats["flip_group_samples"])


def test_a_named_group_is_flipped_and_an_unknown_one_refused(fixture, tmp_path):
    result = _run("label_flip", fixture, tmp_path, {**BUDGET, "epochs": "1", "flip_group": "B"})
    assert result.stats["flip_group"] == "group=B" and result.stats["deployed_group_accuracy"] is None
    with pytest.raises(FairauditError, match="'flip_group' must be 'auto' or one of the groups group=A, group=B"):
        _run("label_flip", fixture, tmp_path, {**BUDGET, "flip_group": "C"})


@pytest.mark.parametrize("settings,message", [
    ({"p": "-0.1"}, r"'p' of 'label_flip' must lie in \[0, 1\]"),
    ({"accuracy_split": "test"}, "cannot fit on the test split"),
    ({"flip_group": " "}, "'flip_group' must be 'auto' or a group name"),
])
def test_bad_label_flip_settings_are_refused(settings, message):
    with pytest.raises(FairauditError, match=message):
        make_config(get_method("label_flip"), settings)


# ---------------------------------------------------------------------------- names

def test_runs_recorded_under_the_old_name_load_as_massaging():
    from fairaudit.jobs.spec import JobSpec

    assert recorded_method("label_flip", {"rate": 1.0, "selection": "boundary", "epochs": 5}) == "massaging"
    assert recorded_method("label_flip", {"p": 0.3, "flip_group": "auto", "epochs": 5}) == "label_flip"
    assert recorded_method("reweight", {"rate": 1.0}) == "reweight"
    old = JobSpec("massaging", "adult", settings={"epochs": "1"}).to_dict()
    old["method"] = "label_flip"  # a run stored before massaging had its own name
    full_config = {"epochs": 1, "lr": 1e-3, "batch_size": 128, "weight_decay": 0.0, "rate": 1.0,
                   "selection": "boundary"}
    assert JobSpec.from_dict(old, full_config).method == "massaging"
    assert JobSpec.from_dict({**old, "settings": {"selection": "random"}}).method == "massaging"
    assert JobSpec.from_dict({**old, "method": "label_flip", "settings": {"p": 0.2}}).method == "label_flip"


def test_the_registry_refuses_a_second_method_or_rename_of_one_name():
    class Impostor(MitigationMethod):
        name = "label_flip"

    with pytest.raises(FairauditError, match="two mitigation methods are named 'label_flip'"):
        register_method(Impostor)
    assert get_method("label_flip").__name__ == "LabelFlip"
    with pytest.raises(FairauditError, match="already has a rename rule"):
        register_rename("label_flip", lambda recorded: None)
