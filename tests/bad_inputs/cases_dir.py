"""Bad input to the Disparate Impact Remover and to RbF / FbR's fairness pre-processor: a repair level outside
[0, 1], an unknown pre-processor, DIR on an image dataset."""

from __future__ import annotations

from tests.bad_inputs import BadInput


def _mitigate(method: str, dataset: str, *settings: str):
    def build(sandbox):
        return ["mitigate", method, "--dataset", dataset, *[a for s in settings for a in ("--set", s)],
                "--json", str(sandbox / "out.json")]

    return build


CASES = [
    BadInput("dir-repair-level-above-one", _mitigate("dir", "adult", "repair_level=1.5"),
             "setting 'repair_level' of 'dir' must lie in [0, 1], got 1.5"),
    BadInput("dir-repair-level-negative", _mitigate("dir", "adult", "repair_level=-0.2"),
             "setting 'repair_level' of 'dir' must lie in [0, 1]"),
    BadInput("dir-repair-level-not-a-number", _mitigate("dir", "adult", "repair_level=full"),
             "setting 'repair_level' of 'dir' expects"),
    BadInput("rbf-dir-repair-level-above-one", _mitigate("rbf", "adult", "fairness=dir", "repair_level=2"),
             "setting 'repair_level' of 'rbf' must lie in [0, 1]"),
    BadInput("fbr-repair-level-negative", _mitigate("fbr", "adult", "repair_level=-1"),
             "setting 'repair_level' of 'fbr' must lie in [0, 1]"),
    BadInput("fbr-unknown-fairness-preprocessor", _mitigate("fbr", "adult", "fairness=lfr"),
             "setting 'fairness' of 'fbr' must be one of rw, dir, got 'lfr'"),
    BadInput("dir-on-an-image-dataset", _mitigate("dir", "synthetic-faces"),
             "method 'dir' works on tabular datasets; 'synthetic-faces' is image"),
    BadInput("benchmark-dir-on-an-image-dataset",
             lambda sandbox: ["benchmark", "--dataset", "colored-digits", "--methods", "dir", "--json",
                              str(sandbox / "bench.json")],
             "method 'dir' works on tabular datasets; 'colored-digits' is image"),
]
