"""FGSM / I-FGSM / PGD: threat-model bounds, ranges, masks, custom losses and attack strength."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fairaudit.attacks import fgsm_attack, ifgsm_attack, per_sample_norm, pgd_attack
from fairaudit.errors import FairauditError


def _blobs(n: int = 512, d: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    centres = torch.rand(3, d, generator=gen) * 0.6 + 0.2
    x = (centres[y] + 0.08 * torch.randn(n, d, generator=gen)).clamp(0, 1)
    return x, y


@pytest.fixture(scope="module")
def trained():
    """A small MLP with batch norm, trained to high accuracy on three Gaussian blobs in [0, 1]^8."""
    torch.manual_seed(0)
    x, y = _blobs()
    model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    assert (model(x).argmax(1) == y).float().mean() > 0.95
    return model, x[:128], y[:128]


def _loss(model, x, y):
    with torch.no_grad():
        return nn.functional.cross_entropy(model(x), y).item()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("attack", ["fgsm", "pgd", "ifgsm"])
def test_perturbation_stays_in_the_ball_and_the_range(trained, norm, attack):
    model, x, y = trained
    eps = 0.1 if norm == "linf" else 0.3
    if attack == "fgsm":
        x_adv = fgsm_attack(model, x, y, eps=eps, norm=norm)
    elif attack == "pgd":
        x_adv = pgd_attack(model, x, y, eps=eps, steps=5, norm=norm, restarts=2,
                           generator=torch.Generator().manual_seed(1))
    else:
        x_adv = ifgsm_attack(model, x, y, eps=eps, steps=5, norm=norm)
    delta = per_sample_norm(x_adv - x, norm)
    assert delta.max() <= eps + 1e-5
    assert delta.max() > 0.5 * eps  # the attack actually moved
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert x_adv.shape == x.shape and not x_adv.requires_grad


def test_clipping_to_a_custom_range_on_images():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2))
    x = torch.rand(6, 3, 8, 8) * 0.4 + 0.3  # inside [0.3, 0.7]
    y = torch.randint(0, 2, (6,))
    x_adv = pgd_attack(model, x, y, eps=0.5, steps=4, clip=(0.3, 0.7))
    assert x_adv.min() >= 0.3 - 1e-7 and x_adv.max() <= 0.7 + 1e-7
    assert per_sample_norm(x_adv - x, "linf").max() <= 0.5 + 1e-6
    # Per-channel bounds broadcast against the batch.
    lo, hi = torch.tensor([0.3, 0.4, 0.5]).view(3, 1, 1), torch.tensor([0.6, 0.7, 0.7]).view(3, 1, 1)
    x = torch.maximum(torch.minimum(x, hi), lo)
    x_adv = pgd_attack(model, x, y, eps=0.5, steps=4, clip=(lo, hi))
    assert bool((x_adv >= lo - 1e-7).all()) and bool((x_adv <= hi + 1e-7).all())


def test_pgd_beats_fgsm_beats_clean(trained):
    model, x, y = trained
    clean = _loss(model, x, y)
    fgsm = _loss(model, fgsm_attack(model, x, y, eps=0.1), y)
    pgd = _loss(model, pgd_attack(model, x, y, eps=0.1, steps=20, generator=torch.Generator().manual_seed(0)), y)
    assert fgsm > clean + 0.1
    assert pgd >= fgsm
    assert pgd > 1.1 * fgsm


def test_targeted_attack_raises_target_probability(trained):
    model, x, y = trained
    target = (y + 1) % 3
    x_adv = pgd_attack(model, x, target, eps=0.15, steps=20, targeted=True)
    with torch.no_grad():
        before = torch.softmax(model(x), 1).gather(1, target[:, None]).mean()
        after = torch.softmax(model(x_adv), 1).gather(1, target[:, None]).mean()
    assert after > before + 0.3


def test_eps_zero_returns_the_input(trained):
    model, x, y = trained
    assert torch.equal(pgd_attack(model, x, y, eps=0.0), x)
    assert torch.equal(fgsm_attack(model, x, y, eps=0.0, norm="l2"), x)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_feature_mask_is_respected(trained, norm):
    model, x, y = trained
    mask = torch.tensor([1, 1, 0, 0, 1, 0, 0, 0])
    x_adv = pgd_attack(model, x, y, eps=0.2, steps=5, norm=norm, feature_mask=mask)
    moved = (x_adv - x).abs().amax(0)
    assert torch.all(moved[mask == 0] == 0)
    assert torch.all(moved[mask == 1] > 0)


def test_model_state_and_parameter_grads_are_untouched(trained):
    model, x, y = trained
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    bn = model[1]
    stats = (bn.running_mean.clone(), bn.running_var.clone())
    pgd_attack(model, x, y, eps=0.1, steps=3)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.all(p.grad == 7.0) for p in model.parameters())
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    for p in model.parameters():
        p.grad = None
    model.eval()


def test_custom_loss_over_the_adversarial_input(trained):
    model, x, y = trained
    # Push feature 0 up: the optimum is x0 + eps (clipped to 1), reached by a single FGSM step.
    x_adv = fgsm_attack(None, x, eps=0.1, loss_fn=lambda x_adv: x_adv[:, 0].sum())
    assert torch.allclose(x_adv[:, 0], (x[:, 0] + 0.1).clamp(max=1.0))
    assert torch.allclose(x_adv[:, 1:], (x[:, 1:] + 0.0))  # zero gradient: sign(0) = 0


def test_composite_loss_like_aeda(trained):
    """AEDA Eq. 3: flip a 'bias' head while keeping the target head, as one objective over x_adv."""
    model, x, y = trained
    torch.manual_seed(1)
    bias_head = nn.Linear(8, 2)
    b = (x[:, 0] > x[:, 0].median()).long()
    opt = torch.optim.Adam(bias_head.parameters(), lr=5e-2)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(bias_head(x), b).backward()
        opt.step()
    lam = 0.7
    ce = nn.functional.cross_entropy

    def composite(x_adv):
        return lam * ce(bias_head(x_adv), 1 - b, reduction="none") + (1 - lam) * ce(model(x_adv), y, reduction="none")

    x_adv = pgd_attack(model, x, eps=0.3, steps=30, targeted=True, loss_fn=composite)
    with torch.no_grad():
        flipped = (bias_head(x_adv).argmax(1) == 1 - b).float().mean()
        kept = (model(x_adv).argmax(1) == y).float().mean()
        flipped_before = (bias_head(x).argmax(1) == 1 - b).float().mean()
    assert flipped > flipped_before + 0.4
    assert kept > 0.9


def test_output_loss_with_two_arguments(trained):
    model, x, y = trained

    def margin(logits, labels):  # CW-style margin of the true class, per sample
        true = logits.gather(1, labels[:, None])[:, 0]
        other = logits.masked_fill(nn.functional.one_hot(labels, 3).bool(), -1e9).amax(1)
        return other - true

    x_adv = pgd_attack(model, x, y, eps=0.15, steps=20, loss_fn=margin)
    with torch.no_grad():
        assert (model(x_adv).argmax(1) != y).float().mean() > (model(x).argmax(1) != y).float().mean() + 0.3


def test_stop_when_freezes_successful_samples(trained):
    model, x, y = trained

    def fooled(x_adv):
        return model(x_adv).argmax(1) != y

    free = pgd_attack(model, x, y, eps=0.3, steps=20, random_start=False)
    early = pgd_attack(model, x, y, eps=0.3, steps=20, random_start=False, stop_when=fooled)
    with torch.no_grad():
        assert fooled(early).float().mean() > 0.5
    assert per_sample_norm(early - x, "linf").mean() < per_sample_norm(free - x, "linf").mean()


def test_restarts_keep_the_best_run_per_sample(trained):
    model, x, y = trained
    ce = lambda xa: nn.functional.cross_entropy(model(xa), y, reduction="none")  # noqa: E731
    one = pgd_attack(model, x, y, eps=0.1, steps=2, generator=torch.Generator().manual_seed(5))
    best = pgd_attack(model, x, y, eps=0.1, steps=2, restarts=4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.all(ce(best) >= ce(one) - 1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"eps": 0.1, "norm": "l1"}, "norm"),
    ({"eps": -1.0}, "eps"),
    ({"eps": 0.1, "steps": 0}, "steps"),
])
def test_bad_settings_raise_clear_errors(trained, kwargs, message):
    model, x, y = trained
    with pytest.raises(FairauditError, match=message):
        pgd_attack(model, x, y, **kwargs)


def test_missing_labels_raise(trained):
    model, x, _ = trained
    with pytest.raises(FairauditError, match="labels"):
        pgd_attack(model, x, eps=0.1)
