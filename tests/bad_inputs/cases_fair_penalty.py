"""Bad input to fair_penalty and minmax: an unknown penalty, a penalty measured on the test split, a negative
weight, an unknown min-max update, a score penalty on a multiclass target."""

from __future__ import annotations

from tests.bad_inputs import BadInput


def _mitigate(method: str, dataset: str, *settings: str):
    def build(sandbox):
        return ["mitigate", method, "--dataset", dataset, *[a for s in settings for a in ("--set", s)],
                "--json", str(sandbox / "out.json")]

    return build


CASES = [
    BadInput("fair-penalty-unknown-kind", _mitigate("fair_penalty", "adult", "kind=dp"),
             "setting 'kind' of 'fair_penalty' must be one of eq_loss, eo, di, got 'dp'"),
    BadInput("fair-penalty-on-the-test-split", _mitigate("fair_penalty", "adult", "penalty_split=test"),
             "fair_penalty cannot fit on the test split (penalty_split='test')"),
    BadInput("fair-penalty-negative-alpha", _mitigate("fair_penalty", "adult", "alpha=-1"),
             "setting 'alpha' of 'fair_penalty' must be a finite number >= 0, got -1.0"),
    BadInput("minmax-unknown-update", _mitigate("minmax", "adult", "update=soft"),
             "setting 'update' of 'minmax' must be one of max, exp_grad, got 'soft'"),
]
