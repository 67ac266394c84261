"""Bad settings of the adversarial-debiasing and label-flipping baselines: refused when the job is created,
before anything is trained or written."""

from __future__ import annotations

from tests.bad_inputs import BadInput

HOME = {"FAIRAUDIT_HOME": "{sandbox}/home"}


def _mitigate(method: str, *settings: str):
    def build(sandbox):
        return ["mitigate", method, "--dataset", "adult", *[a for s in settings for a in ("--set", s)],
                "--json", str(sandbox / "out.json")]

    return build


CASES = [
    BadInput("adv-fair-unknown-update", _mitigate("adv_fair", "update=sideways"),
             "setting 'update' of 'adv_fair' must be one of confusion, projection, reversal, got 'sideways'", env=HOME),
    BadInput("adv-fair-unknown-adversary-input", _mitigate("adv_fair", "adversary_input=pixels"),
             "setting 'adversary_input' of 'adv_fair' must be one of prediction, latent", env=HOME),
    BadInput("label-flip-p-above-one", _mitigate("label_flip", "p=1.5"), "setting 'p' of 'label_flip' must lie in [0, 1]",
             env=HOME),
    BadInput("label-flip-group-accuracy-on-test", _mitigate("label_flip", "accuracy_split=test"),
             "cannot fit on the test split (accuracy_split='test')", env=HOME),
    BadInput("massaging-rate-above-one", _mitigate("massaging", "rate=2"), "setting 'rate' of 'massaging' must lie in [0, 1]",
             env=HOME),
]
