"""Comparing mitigation runs: one table of all runs, the fairness–accuracy trade-off, sweeps and checks.

::

    from fairaudit.compare import runs_table, tradeoff_figure, launch_sweep
    table = runs_table()                       # every run in the registry + one baseline per setup
    fig = tradeoff_figure(table, fairness="deo")
    sweep = launch_sweep(JobSpec("faap", "synthetic-faces"), ["beta=0.5,1,2"], seeds=3)

The checks (:mod:`fairaudit.compare.checks`) flag vacuous training-set
fairness, validation gains that do not transfer, groups of other attributes
that a mitigation made worse, and test splits that mirror the training
split's imbalance.
"""

from fairaudit.compare.checks import (CheckResult, data_composition, gerrymandering, gerrymandering_table,
                                      other_attributes, split_disparities)
from fairaudit.compare.sweeps import Sweep, launch_sweep, parse_grid, repeat_seeds, sweep_runs, sweep_specs
from fairaudit.compare.table import METRICS, full_record, is_collapsed, runs_table, seed_summary
from fairaudit.compare.tradeoff import (FAIRNESS_CHOICES, pareto_front, pareto_table, radar_figure, sweep_figure,
                                        sweep_points, tradeoff_figure, unplotted_runs)

__all__ = ["runs_table", "seed_summary", "full_record", "is_collapsed", "METRICS", "tradeoff_figure", "unplotted_runs",
           "pareto_front", "pareto_table", "sweep_figure", "sweep_points", "radar_figure", "FAIRNESS_CHOICES",
           "Sweep", "parse_grid", "sweep_specs", "launch_sweep", "repeat_seeds", "sweep_runs", "CheckResult",
           "split_disparities", "gerrymandering", "gerrymandering_table", "other_attributes", "data_composition"]
