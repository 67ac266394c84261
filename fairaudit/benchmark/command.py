"""``python -m fairaudit benchmark``: plan, queue, follow, aggregate and write the benchmark."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from fairaudit.errors import FairauditError
from fairaudit.io_safety import write_text_atomic


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of the ``benchmark`` command (data and job options come from :mod:`fairaudit.cli`)."""
    from fairaudit.cli import _add_data_args, _add_job_args

    p.add_argument("--methods", required=True, help="comma-separated methods, e.g. faap,asac,erm,reweight")
    p.add_argument("--controls", nargs="?", const=True, default=False, metavar="NAMES",
                   help="also run each method's controls (all of them, or the comma-separated names given, "
                        "e.g. only_task or faap[only_task])")
    p.add_argument("--seeds", type=int, default=3, help="run every method and control over seeds 0..K-1")
    _add_data_args(p, dataset_required=True)
    _add_job_args(p)
    p.set_defaults(bootstrap=None, split_samples=None)  # the quick values unless given
    p.add_argument("--quick", action="store_true",
                   help="small splits, one epoch and small audits (for a first look, tests and CI)")
    p.add_argument("--json", help="write the benchmark JSON (setup, rows, comparisons) here")
    p.add_argument("--markdown", help="write the leaderboard and comparisons as Markdown here")
    p.add_argument("--ray-address", help="send the runs to a Ray cluster (default: $FAIRAUDIT_RAY_ADDRESS; "
                                         "none: the local worker pool)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--wait", action="store_true", help="follow the runs and write the results (the default)")
    mode.add_argument("--detach", action="store_true",
                      help="queue the runs and return; the same command later reuses them and writes the results")


def _check_output(path: str | None) -> None:
    if path and not Path(path).parent.exists():
        raise FairauditError(f"output folder '{Path(path).parent}' does not exist.")


def command_line(argv: list[str] | None) -> str:
    """The command as typed, for the result's header."""
    args = sys.argv[1:] if argv is None else list(argv)
    return "python -m fairaudit " + shlex.join(args)


def preset_settings(methods: str, preset: str | None, settings: dict) -> dict:
    """``--preset`` of every method of ``methods`` as method-scoped settings (``faap.epochs=…``), under the
    explicit ``--set`` values (a plain ``epochs=2`` wins over every method's preset)."""
    if not preset:
        return settings
    from fairaudit.jobs.spec import load_methods
    from fairaudit.mitigation.base import get_method
    from fairaudit.mitigation.base import preset_settings as method_preset

    load_methods()
    scoped: dict = {}
    for name in {m.strip().split("[")[0] for m in str(methods).split(",") if m.strip()}:
        for key, value in method_preset(get_method(name), preset).items():
            if key not in settings and f"{name}.{key}" not in settings:
                scoped[f"{name}.{key}"] = value
    return {**scoped, **settings}


def run(args) -> int:
    from fairaudit.benchmark import aggregate, launch_benchmark, plan_benchmark, to_markdown, wait_benchmark
    from fairaudit.cli import _data_options, _print_estimate, _progress_bar, _settings, _write_json
    from fairaudit.jobs import FINISHED

    if args.bootstrap is not None and args.bootstrap < 0:
        raise FairauditError("--bootstrap must be ≥ 0.")
    if args.seeds < 1:
        raise FairauditError(f"--seeds must be ≥ 1, got {args.seeds}.")
    for out in (args.json, args.markdown):
        _check_output(out)
    if not (args.json or args.markdown or args.detach or args.estimate):
        raise FairauditError("benchmark: give --json OUT and/or --markdown OUT (or --detach to queue the runs).")
    extra = {"allow_torchscript": True} if getattr(args, "allow_torchscript", False) else {}
    plan = plan_benchmark(args.dataset, args.methods, controls=args.controls, seeds=args.seeds, model=args.model,
                          target=args.target, sensitive=args.sensitive, data_options=_data_options(args.data_opt),
                          data_dir=args.data_dir, settings=preset_settings(args.methods, args.preset,
                                                                           _settings(args.set)), quick=args.quick,
                          device=args.device, arch=args.arch, n_boot=args.bootstrap,
                          robustness_samples=args.robustness_samples, robustness_eps=args.robustness_eps,
                          split_samples=args.split_samples, command=command_line(getattr(args, "argv", None)),
                          job_fields=extra)
    if _print_estimate(plan.specs.values(), args):
        return 0
    manifest = launch_benchmark(plan, ray_address=args.ray_address or os.environ.get("FAIRAUDIT_RAY_ADDRESS"))
    reused = sum(m["reused"] for m in manifest["members"])
    print(f"benchmark {plan.benchmark_id}: {len(plan.rows)} rows × {len(plan.seeds)} seeds = "
          f"{len(manifest['members'])} runs ({reused} reused)")
    if args.detach:
        for member in manifest["members"]:
            print(f"{member['row']:28s} seed {member['seed']}  {member['run_id']}")
        runs = None
    else:
        bar = _progress_bar(100, f"benchmark {plan.benchmark_id}")
        bar.unit = "%"

        def update(runs: list[dict]) -> None:
            done = sum(r["status"] in FINISHED for r in runs)
            bar.n = round(100 * sum(float(r.get("progress") or 0) for r in runs) / max(1, len(runs)), 1)
            bar.set_postfix({"finished": f"{done}/{len(runs)}"}, refresh=False)
            bar.refresh()

        start = time.monotonic()
        with bar:
            runs = wait_benchmark(manifest, on_update=update)
        print(f"finished in {time.monotonic() - start:.1f} s")
    result = aggregate(manifest, runs)
    if args.json:
        _write_json(result, args.json)
    if args.markdown:
        write_text_atomic(args.markdown, to_markdown(result))
    if args.detach:
        return 0
    _print_summary(result)
    failed = [r for r in result["rows"] if r["status"] != "done"]
    for row in failed:
        print(f"benchmark: {row['method']} is {row['status']}"
              + (f": {row['message']}" if row.get("message") else ""), file=sys.stderr)
    return 1 if failed else 0


def _print_summary(result: dict) -> None:
    from fairaudit.compare.table import mean_std_text

    def cell(row, name):
        m = (row.get("metrics") or {}).get(name) or {}
        mean, std = m.get("mean"), m.get("std")
        return mean_std_text(float("nan") if mean is None else mean, float("nan") if std is None else std, 4,
                             n_undefined=int(m.get("n_undefined") or 0),
                             n=len(m.get("values") or []) + int(m.get("n_undefined") or 0))

    print(f"{'row':28s} {'seeds':>5s}  {'accuracy':17s} {'deo':17s} {'spd':17s}")
    for row in result["rows"]:
        print(f"{row['method'][:28]:28s} {row['n_seeds']:5d}  {cell(row, 'accuracy'):17s} {cell(row, 'deo'):17s} "
              f"{cell(row, 'spd'):17s}")
    for c in result["comparisons"]:
        mark = "✓" if c["holds"] else "✗"
        diff = "–" if c["mean_diff"] is None else f"{c['mean_diff']:+.4f}"
        left_out = f", {c['n_undefined']} seed(s) n/a" if c.get("n_undefined") else ""
        print(f"{mark} {c['method']} vs {c['against']}: {c['metric']} {diff} ({c['direction']} is better{left_out})")
