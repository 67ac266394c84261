"""``fairaudit benchmark``: which method works on this setup, over seeds, against its controls.

::

    from fairaudit.benchmark import plan_benchmark, launch_benchmark, wait_benchmark, aggregate, to_markdown
    plan = plan_benchmark("adult", "reweight,erm", controls=True, seeds=3, quick=True)
    manifest = launch_benchmark(plan)          # ordinary tagged jobs for the workers (or Ray)
    wait_benchmark(manifest)
    result = aggregate(manifest)               # the benchmark JSON: setup, rows, comparisons
    print(to_markdown(result))

Every method and control runs once per seed (``0..k−1``) as an ordinary job;
the rows average them (mean, sample standard deviation and a Student-t
interval over seeds), and every asked-for method is compared with the model
before mitigation and with each of its controls, paired by seed.
"""

from fairaudit.benchmark.aggregate import METRIC_NAMES, aggregate, comparisons
from fairaudit.benchmark.controls import QUICK_SETTINGS, Row, resolve_rows
from fairaudit.benchmark.markdown import to_markdown
from fairaudit.benchmark.runner import (BenchmarkPlan, launch_benchmark, list_benchmarks, load_manifest,
                                        member_runs, plan_benchmark, save_manifest, wait_benchmark)
from fairaudit.benchmark.stats import CI_METHOD, paired_comparison, summarize, t_interval

__all__ = ["plan_benchmark", "launch_benchmark", "wait_benchmark", "aggregate", "comparisons", "to_markdown",
           "BenchmarkPlan", "Row", "resolve_rows", "list_benchmarks", "load_manifest", "save_manifest",
           "member_runs", "summarize", "paired_comparison", "t_interval", "CI_METHOD", "METRIC_NAMES",
           "QUICK_SETTINGS"]
