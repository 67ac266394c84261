"""Bad input to ``fairaudit benchmark``: unknown method, control or setting names (with a suggestion), a seed
count below 1, a method that does not work on the dataset's kind, nowhere to write the result."""

from __future__ import annotations

from tests.bad_inputs import BadInput


def _bench(*args: str, out: bool = True):
    def build(sandbox):
        return ["benchmark", *args, *(["--json", str(sandbox / "bench.json")] if out else [])]

    return build


CASES = [
    BadInput("benchmark-unknown-method", _bench("--dataset", "adult", "--methods", "reweigth"),
             "unknown method 'reweigth' (did you mean 'reweight'?)"),
    BadInput("benchmark-unknown-control", _bench("--dataset", "synthetic-faces", "--methods", "faap",
                                                 "--controls", "only_tsk"),
             "unknown control 'only_tsk' (did you mean 'only_task'?)"),
    BadInput("benchmark-control-of-another-method", _bench("--dataset", "adult", "--methods", "erm",
                                                           "--controls", "only_task"),
             "these methods declare no controls"),
    BadInput("benchmark-zero-seeds", _bench("--dataset", "adult", "--methods", "erm", "--seeds", "0"),
             "--seeds must be ≥ 1, got 0"),
    BadInput("benchmark-negative-seeds", _bench("--dataset", "adult", "--methods", "erm", "--seeds", "-2"),
             "--seeds must be ≥ 1, got -2"),
    BadInput("benchmark-image-method-on-tabular-data", _bench("--dataset", "adult", "--methods", "reweight,faap"),
             "method 'faap' works on image datasets; 'adult' is tabular"),
    BadInput("benchmark-tabular-method-on-images", _bench("--dataset", "synthetic-faces", "--methods", "froc_pre"),
             "method 'froc_pre' works on tabular datasets; 'synthetic-faces' is image"),
    BadInput("benchmark-method-twice", _bench("--dataset", "adult", "--methods", "erm,reweight,erm"),
             "method 'erm' is given twice"),
    BadInput("benchmark-unknown-setting", _bench("--dataset", "adult", "--methods", "erm", "--set", "epochz=2"),
             "no method of this benchmark has a setting 'epochz' (did you mean 'epochs'?)"),
    BadInput("benchmark-setting-of-absent-method", _bench("--dataset", "adult", "--methods", "erm",
                                                          "--set", "reweigt.scheme=balanced"),
             "names method 'reweigt', which is not in this benchmark"),
    BadInput("benchmark-bad-setting-value", _bench("--dataset", "adult", "--methods", "erm", "--set", "epochs=two"),
             "setting 'epochs' of 'erm' expects"),
    BadInput("benchmark-no-output", _bench("--dataset", "adult", "--methods", "erm", out=False),
             "give --json OUT and/or --markdown OUT"),
    BadInput("benchmark-output-folder-missing",
             lambda sandbox: ["benchmark", "--dataset", "adult", "--methods", "erm", "--markdown",
                              str(sandbox / "missing" / "bench.md")],
             "output folder"),
]
