"""Command-line interface: ``python -m fairaudit <command>`` (also installed as ``fairaudit``).

Commands: ``audit``, ``robustness``, ``audit-predictions``, ``slices`` (which subgroups drive a gap),
``check`` (a CI gate: exit 0 pass, 1 fail, 3 inconclusive), ``identify`` (face recognition per group),
``face-train-sweep`` (face recognition against the training mix), ``train``, ``datasets``, ``models``,
``mitigate``, ``sweep``, ``benchmark``, ``runs``, ``report``, ``leakage``, ``demo``.
Errors caused by arguments or files print one line on stderr and exit with
code 2; nothing is half-written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from fairaudit.errors import FairauditError

EXIT_USAGE = 2
PROG = "fairaudit"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, no usage dump; main() adds the "fairaudit: error: " prefix
        command = self.prog.removeprefix(PROG).strip()
        sentence = message.rstrip(".") + "."
        raise FairauditError(f"{command}: {sentence}" if command else sentence)


def _data_options(pairs: list[str] | None) -> dict[str, str]:
    options = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise FairauditError(f"--data-opt expects key=value, got {pair!r}.")
        key, value = pair.split("=", 1)
        options[key.strip()] = value.strip()
    return options


def _add_data_args(p: argparse.ArgumentParser, dataset_required: bool = True) -> None:
    p.add_argument("--dataset", required=dataset_required, help="registered dataset name (see `datasets`)")
    p.add_argument("--data-dir", help="local folder for datasets that are not embedded")
    p.add_argument("--target", help="target attribute (default: the dataset's)")
    p.add_argument("--sensitive", help="sensitive attribute(s), comma-separated")
    p.add_argument("--data-opt", action="append", metavar="KEY=VALUE", help="dataset option, repeatable")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")


def _progress_bar(total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=None, leave=False)


def _write_json(data: dict, path: str) -> None:
    from fairaudit.io_safety import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False))


def _write_groups_csv(report, path: str | None) -> None:
    """The per-group table as CSV (spreadsheet formulas neutralised), when ``--csv`` is given."""
    if path:
        from fairaudit.io_safety import write_text_atomic

        write_text_atomic(path, report.groups_csv())


def _check_arguments(args) -> None:
    """Checks shared by every command, done before any work: device names and output paths."""
    from fairaudit.device import check_device_name
    from fairaudit.io_safety import check_output_file

    if (getattr(args, "bootstrap", 0) or 0) < 0:
        raise FairauditError("--bootstrap must be ≥ 0.")
    if not 0.0 <= getattr(args, "threshold", 0.5) <= 1.0:
        raise FairauditError("--threshold must lie in [0, 1].")
    check_device_name(getattr(args, "device", None))
    for option in ("json", "html", "csv", "markdown", "out"):
        if getattr(args, option, None):
            check_output_file(getattr(args, option))


def _train_progress(desc: str):
    bar = _progress_bar(None, desc)

    def update(event: dict) -> None:
        if event.get("event") == "step":
            bar.total = event["steps"]
            bar.n = event["step"]
            bar.set_postfix(epoch=event["epoch"] + 1, loss=f"{event['loss']:.3f}")
            bar.refresh()

    return bar, update


def dataset_and_model(args, progress=None):
    """``(dataset, model, description, data_options)`` of a command's ``--dataset/--split/--model`` arguments
    (:func:`_add_data_args`, :func:`_add_model_args`): the split loaded, the model resolved on it."""
    from fairaudit.data import load_dataset
    from fairaudit.loading import resolve_model

    options = _data_options(args.data_opt)
    dataset = load_dataset(args.dataset, args.split, args.target, args.sensitive, args.data_dir, **options)
    model, description = resolve_model(args.model, dataset, arch=args.arch, head=args.head, data_options=options,
                                       data_dir=args.data_dir, device=args.device, progress=progress,
                                       allow_torchscript=args.allow_torchscript)
    return dataset, model, description, options


def cmd_audit(args) -> int:
    from fairaudit.audit import run_audit

    bar, train_update = _train_progress("training demo model")
    with bar:
        dataset, model, description, options = dataset_and_model(args, progress=train_update)
    with _progress_bar(len(dataset), f"auditing {args.dataset}/{args.split}") as pbar:
        report, _ = run_audit(dataset, model, threshold=args.threshold, n_boot=args.bootstrap, seed=args.seed,
                              device=args.device, batch_size=args.batch_size,
                              progress=lambda done, total: pbar.update(done - pbar.n),
                              meta={"model": description, "data_options": options})
    _write_json(report.to_dict(), args.json)
    _write_groups_csv(report, args.csv)
    d = report.disparities
    print(f"accuracy {report.overall['accuracy']:.4f}  spd {_metric(d['spd'])}  deo {_metric(d['deo'])}  "
          f"eo_max {_metric(d['eo_max'])}  -> {args.json}")
    _print_undefined(report.undefined)
    _warn_flagged(report)
    return 0


def _metric(value, spec: str = ".4f") -> str:
    """A metric as text; ``n/a`` when it is undefined (``None`` or NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return format(number, spec) if number == number and abs(number) != float("inf") else "n/a"


def _warn_flagged(report) -> None:
    """One stderr warning per group too small or too uncertain to judge (the audit JSON's ``flagged_groups``)."""
    from fairaudit.metrics.guardrails import describe_flag

    for flag in report.flagged_groups():
        print(f"fairaudit: warning: group {describe_flag(flag)}: too small or uncertain to judge; every "
              "disparity involving it is inconclusive.", file=sys.stderr)


def _print_undefined(undefined, stage: str = "") -> None:
    """One line per undefined disparity with the reason it is undefined."""
    for name, reason in (undefined or {}).items():
        print(f"  {stage}{name} n/a: {reason}")


def cmd_robustness(args) -> int:
    from fairaudit.data import load_dataset
    from fairaudit.loading import resolve_model
    from fairaudit.robustness import RobustnessAuditor

    if args.max_samples is not None and args.max_samples < 1:
        raise FairauditError("--max-samples must be ≥ 1.")
    auditor = RobustnessAuditor(args.attack, eps=args.eps, norm=args.norm, steps=args.steps,
                                step_size=args.step_size, restarts=args.restarts, max_samples=args.max_samples,
                                n_boot=args.bootstrap, seed=args.seed, device=args.device,
                                batch_size=args.batch_size)
    options = _data_options(args.data_opt)
    dataset = load_dataset(args.dataset, args.split, args.target, args.sensitive, args.data_dir, **options)
    auditor._configs(dataset.kind)  # bad attack settings fail before the model is loaded
    if args.json and Path(args.json).parent and not Path(args.json).parent.exists():
        raise FairauditError(f"output folder '{Path(args.json).parent}' does not exist.")
    bar, train_update = _train_progress("training demo model")
    with bar:
        model, description = resolve_model(args.model, dataset, arch=args.arch, head=args.head,
                                           data_options=options, data_dir=args.data_dir, device=args.device,
                                           progress=train_update, allow_torchscript=args.allow_torchscript)
    n = min(len(dataset), args.max_samples or len(dataset))
    with _progress_bar(n, f"attacking {args.dataset}/{args.split} ({args.attack})") as pbar:
        report = auditor.audit(model, dataset, progress=lambda done, total: pbar.update(done - pbar.n))
    data = report.to_dict()
    data["meta"].update({"model": description, "data_options": options})
    _write_json(data, args.json)
    parts = [f"clean {report.clean.overall['accuracy']:.4f}"]
    parts += [f"{name} {acc:.4f} (gap {report.gap(name):.4f})" for name, acc in report.s_r.items()]
    print("accuracy " + "  ".join(parts) + f"  -> {args.json}")
    return 0


def cmd_audit_predictions(args) -> int:
    from fairaudit.audit import audit_predictions
    from fairaudit.audit.external import read_predictions_csv

    preds = read_predictions_csv(args.file, args.label, args.pred, args.sensitive, args.score,
                                 threshold=args.threshold)
    report = audit_predictions(preds, threshold=args.threshold, n_boot=args.bootstrap, seed=args.seed,
                               device=args.device, min_group_size=args.min_group_size,
                               meta={"source": str(args.file)})
    for warning in preds.meta.get("warnings", []):
        print(f"fairaudit: warning: {warning}", file=sys.stderr)
    _write_json(report.to_dict(), args.json)
    _write_groups_csv(report, args.csv)
    print(f"accuracy {report.overall['accuracy']:.4f}  spd {_metric(report.disparities['spd'])}  -> {args.json}")
    _print_undefined(report.undefined)
    _warn_flagged(report)
    return 0


def cmd_train(args) -> int:
    from fairaudit.train import TrainConfig
    from fairaudit.train.deployed import train_deployed_model

    if args.max_steps is not None and args.max_steps < 1:
        raise FairauditError(f"--max-steps must be >= 1, got {args.max_steps}.")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         max_steps=args.max_steps)
    out = Path(args.out)
    if not out.parent.exists():
        raise FairauditError(f"output folder '{out.parent}' does not exist.")
    bar, update = _train_progress(f"training {args.arch or 'default'} on {args.dataset}")
    with bar:
        _, path, info = train_deployed_model(args.dataset, args.target, args.sensitive, arch=args.arch,
                                             config=config, data_options=_data_options(args.data_opt),
                                             data_dir=args.data_dir, device=args.device, out=out,
                                             progress=update, variant=args.variant)
    print(f"trained in {info['train_seconds']:.1f}s, final loss {info['history'][-1]['loss']:.4f} -> {path}")
    return 0


def cmd_demo(args) -> int:
    """List the shipped demo models; ``--rebuild`` retrains them into assets/, ``--check`` compares a retraining."""
    import tempfile

    from fairaudit.demo import SHIPPED, rebuild_shipped_models, shipped_model_path
    from fairaudit.models.io import load_model

    datasets = tuple(d.strip() for d in args.dataset.split(",") if d.strip()) if args.dataset else SHIPPED
    for name in datasets:
        if name not in SHIPPED:
            raise FairauditError(f"no demo model of '{name}' is shipped; shipped: {', '.join(SHIPPED)}.")
    if not (args.rebuild or args.check):
        for name in datasets:
            path = shipped_model_path(name)
            print(f"{name:18s} {path if path else 'missing or stale: run `python -m fairaudit demo --rebuild`'}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        bar, update = _train_progress("training demo models")
        with bar:
            paths = rebuild_shipped_models(datasets, out_dir=None if args.rebuild else Path(tmp),
                                           progress=lambda name, event: update(event))
        for name, path in zip(datasets, paths):
            if args.rebuild:
                print(f"{name:18s} -> {path}")
                continue
            shipped = shipped_model_path(name)
            same = shipped is not None and _same_weights(load_model(shipped), load_model(path))
            if not same:
                raise FairauditError(f"the shipped demo model of '{name}' is not what its recipe trains; run "
                                     "`python -m fairaudit demo --rebuild`.")
            print(f"{name:18s} identical to its recipe's retraining: {shipped}")
    return 0


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].dtype == sb[k].dtype and bool((sa[k] == sb[k]).all()) for k in sa)


def cmd_datasets(args) -> int:
    from fairaudit.data import list_datasets

    for spec in list_datasets():
        where = "embedded" if spec.embedded else "needs --data-dir"
        opts = ", ".join(f"{k}={v}" for k, v in spec.options.items())
        print(f"{spec.name:18s} {spec.kind:8s} {where:17s} target={spec.default_target} "
              f"sensitive={','.join(spec.default_sensitive)}  options: {opts or '-'}")
    return 0


def cmd_metrics(args) -> int:
    from fairaudit.metrics.catalogue import CATALOGUE

    if args.json:
        listing = [m.to_dict() for m in CATALOGUE.values()]
        if args.json == "-":
            print(json.dumps(listing, indent=2, ensure_ascii=False))
        else:
            _write_json(listing, args.json)
        return 0
    for m in CATALOGUE.values():
        print(f"{m.name:22s} {m.kind:10s} {m.better + ' is better':17s} {m.label}: {m.help}")
    return 0


def cmd_models(args) -> int:
    from fairaudit.models.registry import MODEL_KINDS

    for name, kind in MODEL_KINDS.items():
        print(f"{name:12s} {kind}")
    return 0


def _settings(pairs: list[str] | None) -> dict[str, str]:
    settings = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise FairauditError(f"--set expects key=value, got {pair!r}.")
        key, value = pair.split("=", 1)
        settings[key.strip()] = value.strip()
    return settings


def _job_progress(desc: str):
    """A percentage bar for a job's overall progress, with its phase, epoch and loss."""
    bar = _progress_bar(100, desc)
    bar.unit = "%"

    def update(event: dict) -> None:
        bar.n = round(100 * float(event.get("fraction") or 0.0), 1)
        postfix = {"phase": event.get("phase", "")}
        if isinstance(event.get("epoch"), int):
            postfix["epoch"] = event["epoch"] + (event.get("event") == "step")
        if isinstance(event.get("loss"), float):
            postfix["loss"] = f"{event['loss']:.3f}"
        bar.set_postfix(postfix, refresh=False)
        bar.refresh()

    return bar, update


def _print_outcome(result: dict, out: str | None) -> None:
    b, a = result["summary"]["before"], result["summary"]["after"]
    where = f"  -> {out}" if out else ""
    print(f"run {result['run_id']} ({result['method']}): accuracy {_metric(b['accuracy'])} -> "
          f"{_metric(a['accuracy'])}  deo {_metric(b['deo'])} -> {_metric(a['deo'])}  spd {_metric(b['spd'])} -> "
          f"{_metric(a['spd'])}{where}")
    for stage in ("before", "after"):
        _print_undefined((result.get(stage) or {}).get("undefined"), f"{stage} ")


def _follow(run_id: str, desc: str) -> dict:
    """Wait for a run executed elsewhere (worker pool or Ray) with a progress bar; return its result."""
    from fairaudit.jobs import run_result, wait

    bar, update = _job_progress(desc)
    with bar:
        run = wait(run_id, on_update=lambda r: update({**(r.get("event") or {}), "fraction": r["progress"],
                                                       "phase": r.get("phase") or r["status"]}))
    return run_result(run)


_TORCHSCRIPT_HELP = ("accept a TorchScript archive as --model; it is a program that runs with your permissions "
                     "(it can read and write files), so only for a file whose author you trust")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    """The model and split options of the commands that evaluate one model."""
    p.add_argument("--model", default="demo", help="'demo' or a checkpoint path")
    p.add_argument("--allow-torchscript", action="store_true", help=_TORCHSCRIPT_HELP)
    p.add_argument("--arch", help="architecture of a checkpoint without its JSON sidecar")
    p.add_argument("--head", help="name of the classification head module of a user torchvision model")
    p.add_argument("--split", default="test")


def _add_job_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that creates mitigation jobs."""
    p.add_argument("--model", default="demo", help="'demo' or a checkpoint path")
    p.add_argument("--allow-torchscript", action="store_true", help=_TORCHSCRIPT_HELP)
    p.add_argument("--arch", help="architecture of a checkpoint without its JSON sidecar")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="method setting, repeatable")
    p.add_argument("--preset", metavar="NAME",
                   help="start from the method's named settings: 'quick' (a short demo run; --estimate says how long) or "
                        "'paper' (the published settings); --set values override them")
    p.add_argument("--estimate", action="store_true",
                   help="print how long the settings will take on this device and exit (times a few steps of "
                        "the job first unless finished runs or an earlier timing say it)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the before/after audits")
    p.add_argument("--robustness-samples", type=int, default=None,
                   help="test samples attacked (FGSM, PGD) before and after; 0: off (default: the method's threat "
                        "model's, e.g. all rows for the FRoC methods, else 128 on CPU, 500 on CUDA)")
    p.add_argument("--robustness-eps", type=float, default=None,
                   help="attack radius of that check (default: the method's threat model's, else 8/255 for images, "
                        "0.1 for tabular features)")
    p.add_argument("--split-samples", type=int, default=2000,
                   help="rows of the train and validation splits audited before and after; 0: off")


def _preset_settings(method: str, args) -> dict:
    """``--set`` over the method's ``--preset`` (if any)."""
    from fairaudit.jobs.spec import load_methods
    from fairaudit.mitigation.base import get_method, preset_settings

    load_methods()
    return preset_settings(get_method(method), getattr(args, "preset", None), _settings(args.set))


def _print_estimate(specs, args) -> bool:
    """With ``--estimate``: print the estimate of ``specs`` (calibrating if needed) and return True. Otherwise
    print it to stderr when it is known without running anything, and return False."""
    from fairaudit.jobs.estimate import estimate_many

    found = estimate_many(specs, calibrate_if_needed=bool(getattr(args, "estimate", False)))
    if getattr(args, "estimate", False):
        print(f"estimated time: {found.text}")
        return True
    if found is not None:
        print(f"estimated time: {found.text}", file=sys.stderr)
    return False


def _job_fields(args) -> dict:
    return dict(method=args.method, dataset=args.dataset, model=args.model, target=args.target,
                sensitive=args.sensitive, data_options=_data_options(args.data_opt), data_dir=args.data_dir,
                settings=_preset_settings(args.method, args), device=args.device, seed=args.seed, arch=args.arch,
                n_boot=args.bootstrap, robustness_samples=args.robustness_samples,
                robustness_eps=args.robustness_eps, split_samples=args.split_samples,
                allow_torchscript=args.allow_torchscript)


def _list_settings_json(method: str | None, out: str) -> int:
    """Every method's settings (or ``method``'s) and every dataset's options, with type, default, help, range or
    choices and unit, as JSON on stdout (``out`` is ``-``) or into the file ``out``."""
    from fairaudit.data import list_datasets
    from fairaudit.data.registry import option_help
    from fairaudit.mitigation import METHODS, config_help

    names = [method] if method is not None else list(METHODS)
    listing = {"methods": {name: {"summary": METHODS[name].summary, "kinds": list(METHODS[name].kinds),
                                  "settings": config_help(METHODS[name])} for name in names}}
    if method is None:
        listing["datasets"] = {spec.name: {"kind": spec.kind, "options": option_help(spec)}
                               for spec in list_datasets()}
    text = json.dumps(listing, indent=2, ensure_ascii=False)
    if out == "-":
        print(text)
    else:
        if not Path(out).parent.exists():
            raise FairauditError(f"output folder '{Path(out).parent}' does not exist.")
        Path(out).write_text(text + "\n", encoding="utf-8")
    return 0


def cmd_mitigate(args) -> int:
    from fairaudit.jobs import JobSpec, run_job, submit
    from fairaudit.jobs.spec import load_methods
    from fairaudit.mitigation import config_help, get_method

    if args.list_settings:
        load_methods()
        if args.json is not None:
            return _list_settings_json(args.method, args.json)
        if args.method is None:
            raise FairauditError("mitigate --list-settings: name a method, or add --json for every method.")
        for item in config_help(get_method(args.method)):
            print(f"{item['name']:24s} default {item['default']!r:12}  {item['help']}")
        return 0
    if args.method is None:
        raise FairauditError("mitigate: the following arguments are required: method")
    if args.json == "-":
        raise FairauditError("mitigate: --json needs the path of the output file.")
    if not args.dataset:
        raise FairauditError("mitigate: the following arguments are required: --dataset")
    if not args.json and not args.detach and not args.estimate:
        raise FairauditError("mitigate: --json OUT is required (or --detach to queue the run and return).")
    if args.json and not Path(args.json).parent.exists():
        raise FairauditError(f"output folder '{Path(args.json).parent}' does not exist.")
    spec = JobSpec(**_job_fields(args))
    if _print_estimate([spec], args):
        return 0
    ray_address = args.ray_address or os.environ.get("FAIRAUDIT_RAY_ADDRESS")
    if args.detach or ray_address:
        run_id = submit(spec, ray_address=ray_address)
        if args.detach:
            print(run_id)
            return 0
        result = _follow(run_id, f"{args.method} on {args.dataset} (run {run_id})")
    else:
        bar, update = _job_progress(f"{args.method} on {args.dataset}")
        with bar:
            result = run_job(spec, progress=update)
    if args.json:
        _write_json(result, args.json)
    _print_outcome(result, args.json)
    return 0


def cmd_sweep(args) -> int:
    """Queue a grid of settings × seeds as tagged jobs; with ``--wait`` follow them and print mean ± std."""
    import time

    from fairaudit.compare import launch_sweep, runs_table, seed_summary
    from fairaudit.compare.table import mean_std_text
    from fairaudit.jobs import FINISHED, JobSpec, get_run

    if not args.dataset:
        raise FairauditError("sweep: the following arguments are required: --dataset")
    if not args.grid and args.seeds < 2:
        raise FairauditError("sweep: give at least one --grid setting=v1,v2,... or --seeds K with K ≥ 2.")
    base = JobSpec(**_job_fields(args))
    from fairaudit.compare.sweeps import sweep_specs

    if _print_estimate(sweep_specs(base, args.grid, args.seeds if args.seeds > 1 else None).specs, args):
        return 0
    sweep = launch_sweep(base, args.grid, args.seeds if args.seeds > 1 else None,
                         ray_address=args.ray_address or os.environ.get("FAIRAUDIT_RAY_ADDRESS"))
    grid = " × ".join(f"{k} ∈ {{{', '.join(map(str, v))}}}" for k, v in sweep.grid.items()) or "no grid"
    print(f"sweep {sweep.sweep_id}: {len(sweep.run_ids)} runs ({grid}; seeds {', '.join(map(str, sweep.seeds))})")
    if not args.wait:
        for run_id in sweep.run_ids:
            print(run_id)
        if args.json:
            _write_json({"sweep": sweep.sweep_id, "runs": sweep.run_ids, "grid": sweep.grid, "seeds": sweep.seeds},
                        args.json)
        return 0
    bar = _progress_bar(100, f"sweep {sweep.sweep_id}")
    bar.unit = "%"
    with bar:
        while True:
            runs = [get_run(r) for r in sweep.run_ids]
            done = sum(r["status"] in FINISHED for r in runs)
            bar.n = round(100 * sum(float(r.get("progress") or 0) for r in runs) / len(runs), 1)
            bar.set_postfix({"finished": f"{done}/{len(runs)}"}, refresh=False)
            bar.refresh()
            if done == len(runs):
                break
            time.sleep(0.5)
    summary = seed_summary(runs_table(runs))
    print(f"{'setting':34s} {'seeds':>5s}  {'accuracy':17s} {'deo':17s} {'spd':17s}")
    for _, row in summary.iterrows():
        cells = [f"{mean_std_text(row[m], row[m + '_std'], 4):17s}" for m in ("accuracy", "deo", "spd")]
        flag = "  collapsed" if row["collapsed"] else ""
        print(f"{row['settings'][:34]:34s} {int(row['n_seeds']):5d}  {' '.join(cells)}{flag}")
    failed = [r["id"] for r in runs if r["status"] != "done"]
    for run_id in failed:
        print(f"run {run_id}: {get_run(run_id)['status']}", file=sys.stderr)
    if args.json:
        rows = json.loads(summary.drop(columns=["config_key"]).to_json(orient="records"))
        _write_json({"sweep": sweep.sweep_id, "runs": sweep.run_ids, "grid": sweep.grid, "seeds": sweep.seeds,
                     "summary": rows}, args.json)
    return 0 if not failed else 1


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def cmd_runs(args) -> int:
    import time

    from fairaudit.jobs import cancel, get_run, list_runs, resume, run_result

    if args.cancel:
        print(f"run {args.cancel}: {cancel(args.cancel)}"
              + (" (stops at its next step)" if get_run(args.cancel)["status"] == "running" else ""))
        return 0
    if args.resume:
        if args.detach:
            resume(args.resume)
            print(f"run {args.resume}: queued to resume")
            return 0
        bar, update = _job_progress(f"resuming {args.resume}")
        with bar:
            resume(args.resume, foreground=True, progress=update)
        result = run_result(get_run(args.resume))
        if args.json:
            _write_json(result, args.json)
        _print_outcome(result, args.json)
        return 0
    if args.show:
        run = get_run(args.show)
        if args.json:
            _write_json(run, args.json)
        else:
            print(json.dumps({k: v for k, v in run.items() if k not in ("before", "after", "traceback")},
                             indent=2, default=str))
        return 0
    runs = list_runs(limit=args.limit, dataset=args.dataset, status=args.status)
    if args.json:
        _write_json({"runs": runs}, args.json)
    print(f"{'run':22s} {'method':16s} {'dataset':16s} {'status':11s} {'progress':>8s}  {'deo before -> after':22s}"
          f" created")
    for run in runs:
        summary = run.get("summary") or {}
        deo = f"{_fmt((summary.get('before') or {}).get('deo'))} -> {_fmt((summary.get('after') or {}).get('deo'))}"
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["created"]))
        print(f"{run['id']:22s} {run['method']:16s} {run['dataset']:16s} {run['status']:11s} "
              f"{100 * run['progress']:7.0f}%  {deo:22s} {created}")
        if run["status"] in ("failed", "interrupted") and run.get("message"):
            print(f"{'':22s} {run['message']}")
    return 0


def cmd_report(args) -> int:
    from fairaudit.report import build_report, report_tolerances

    if not args.html and not args.json:
        raise FairauditError("report: give --html OUT.html and/or --json OUT.json.")
    for out in (args.html, args.json):
        if out and not Path(out).parent.exists():
            raise FairauditError(f"output folder '{Path(out).parent}' does not exist.")
    for pair in args.tolerance or []:
        if "=" not in pair:
            raise FairauditError(f"--tolerance expects name=value, got {pair!r}.")
    tolerances = report_tolerances({k.strip(): v.strip() for k, v in (t.split("=", 1) for t in args.tolerance or [])})
    bar = _progress_bar(None, f"report on {len(args.run_ids)} run(s)")
    bar.unit = "section"

    def update(fraction: float, title: str) -> None:
        bar.total, bar.n = 100, int(round(100 * fraction))
        bar.set_postfix(section=title, refresh=False)
        bar.refresh()

    with bar:
        document = build_report(args.run_ids, explain=not args.no_explain, embed=not args.no_embed,
                                samples=args.samples, tolerances=tolerances, device=args.device, seed=args.seed,
                                progress=update)
    written = []
    if args.html:
        written.append(str(document.write_html(args.html)))
    if args.json:
        written.append(str(document.write_json(args.json)))
    missing = [s.title for s in document.sections if not s.available]
    print(f"report on {', '.join(document.run_ids)}: {len(document.sections) - len(missing)} of "
          f"{len(document.sections)} sections" + (f" (not available: {', '.join(missing)})" if missing else "")
          + f" -> {', '.join(written)}")
    return 0


def cmd_leakage(args) -> int:
    from fairaudit.embed import run_leakage

    if args.json and not Path(args.json).parent.exists():
        raise FairauditError(f"output folder '{Path(args.json).parent}' does not exist.")
    bar = _progress_bar(None, f"leakage probe on run {args.run_id}")
    bar.total, bar.unit = 100, "%"

    def update(fraction: float, message: str) -> None:
        bar.n = int(round(100 * fraction))
        bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    with bar:
        result = run_leakage(args.run_id, n=args.samples, folds=args.folds, seed=args.seed, device=args.device,
                             refresh=args.refresh, progress=update)
    if args.json:
        _write_json(result, args.json)
    for attr, stages in result["attributes"].items():
        line = "  ".join(f"{stage} accuracy {stages[stage]['accuracy']:.3f} AUC {stages[stage]['auc']:.3f}"
                         for stage in ("before", "after") if stages.get(stage))
        print(f"{attr}: {line}  (chance {next(iter(stages.values()))['chance']:.3f})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Group-fairness auditing for vision and tabular models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("audit", help="audit a model on a dataset split")
    _add_data_args(p)
    _add_model_args(p)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CIs (0: none)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--json", required=True, help="output JSON path")
    p.add_argument("--csv", help="also write the per-group table as CSV here")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("robustness", help="clean vs. FGSM/PGD adversarial accuracy per group")
    _add_data_args(p)
    _add_model_args(p)
    p.add_argument("--attack", default="fgsm,pgd", help="fgsm, pgd or both comma-separated")
    p.add_argument("--eps", type=float, help="attack radius (default 8/255 for images, 0.1 for standardised "
                                             "numeric features)")
    p.add_argument("--norm", default="linf", help="linf | l2")
    p.add_argument("--steps", type=int, default=10, help="PGD steps")
    p.add_argument("--step-size", type=float, help="PGD step size (default 2.5·eps/steps)")
    p.add_argument("--restarts", type=int, default=1, help="PGD random restarts")
    p.add_argument("--max-samples", type=int, help="attack a seeded random subsample of this size")
    p.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples for CIs (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--json", required=True, help="output JSON path")
    p.set_defaults(func=cmd_robustness)

    p = sub.add_parser("audit-predictions", help="audit existing predictions from a CSV file")
    p.add_argument("file")
    p.add_argument("--label", required=True, help="column of true labels")
    p.add_argument("--pred", help="column of the decisions made (the same values as --label); when given it is "
                                  "always the audited decision, even with --score")
    p.add_argument("--score", help="column of P(y = 1) of a binary target; alone, the decision is score >= "
                                   "--threshold; with --pred it is kept only if it reproduces --pred at --threshold")
    p.add_argument("--sensitive", required=True, help="sensitive column(s), comma-separated")
    p.add_argument("--min-group-size", type=int, default=10,
                   help="refuse groups with fewer rows (default 10); their rates would be noise")
    p.add_argument("--csv", help="also write the per-group table as CSV here")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", required=True)
    p.set_defaults(func=cmd_audit_predictions)

    p = sub.add_parser("train", help="train a deployed model and save a checkpoint")
    _add_data_args(p)
    p.add_argument("--arch")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-steps", type=int, help="at most this many steps per epoch")
    p.add_argument("--seed", type=int, default=0, help="fixes the initial weights, data order and every random draw")
    p.add_argument("--variant", choices=("normal", "fair", "lf", "rg"), default="normal",
                   help="training objective: normal (ERM), fair (adversarial debiasing), lf (label flipping) "
                        "or rg (reversed adversary gradient, amplifies the sensitive correlation)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("mitigate", help="run a bias-mitigation method and audit before/after")
    p.add_argument("method", nargs="?", help="mitigation method name (optional with --list-settings --json)")
    _add_data_args(p, dataset_required=False)
    _add_job_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", nargs="?", const="-", help="output JSON path (with --list-settings: the listing, "
                                                         "on stdout without a path)")
    p.add_argument("--ray-address", help="run on a Ray cluster ('local', 'auto' or an address) and wait "
                                         "(default: $FAIRAUDIT_RAY_ADDRESS; none: run here)")
    p.add_argument("--detach", action="store_true", help="queue the run for the background workers, print its id")
    p.add_argument("--list-settings", action="store_true",
                   help="print the method's settings and exit; with --json: every method's settings and every "
                        "dataset's options (type, default, help, range or choices, unit) as JSON")
    p.set_defaults(func=cmd_mitigate)

    p = sub.add_parser("sweep", help="queue a method over a grid of settings and/or seeds (tagged runs)")
    p.add_argument("method", help="mitigation method name")
    _add_data_args(p, dataset_required=False)
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                   help="setting and the values to try; at most two --grid options (their product is run)")
    p.add_argument("--seeds", type=int, default=1, help="repeat every grid point over seeds 0..K-1")
    _add_job_args(p)
    p.add_argument("--seed", type=int, default=0, help="the seed when --seeds is 1")
    p.add_argument("--ray-address", help="send the runs to a Ray cluster (default: $FAIRAUDIT_RAY_ADDRESS; "
                                         "none: the local worker pool)")
    p.add_argument("--wait", action="store_true", help="follow the runs and print mean ± std per grid point")
    p.add_argument("--json", help="write the sweep (and with --wait its summary) to this JSON file")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("runs", help="list, show, cancel or resume mitigation runs")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--dataset", help="only runs on this dataset")
    p.add_argument("--status", choices=("queued", "running", "done", "failed", "cancelled", "interrupted"),
                   help="only runs with this status")
    p.add_argument("--json", help="write the listing (or the --show/--resume run) to this JSON file")
    p.add_argument("--show", metavar="RUN_ID", help="print every recorded field of one run")
    p.add_argument("--cancel", metavar="RUN_ID", help="cancel a queued or running run")
    p.add_argument("--resume", metavar="RUN_ID", help="resume an interrupted, failed or cancelled run here")
    p.add_argument("--detach", action="store_true", help="with --resume: hand the run to the background workers")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("report", help="write a self-contained HTML (and/or JSON) audit report of finished runs")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="finished runs to report on")
    p.add_argument("--html", help="output HTML path")
    p.add_argument("--json", help="output JSON path (the same content as data)")
    p.add_argument("--no-explain", action="store_true", help="leave out the attribution maps (saves seconds)")
    p.add_argument("--no-embed", action="store_true", help="leave out the latent embeddings (saves seconds)")
    p.add_argument("--samples", type=int, default=2000, help="test samples in each embedding map")
    p.add_argument("--tolerance", action="append", metavar="NAME=VALUE",
                   help="tolerance of a disparity (e.g. deo=0.05, dp_ratio=0.8) or a kind (gap, ratio, floor); "
                        "repeatable")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("leakage", help="probe a finished run's latents for the sensitive attributes, before/after")
    p.add_argument("run_id", metavar="RUN_ID", help="a finished run")
    p.add_argument("--samples", type=int, default=5000, help="stratified test samples probed")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    p.add_argument("--refresh", action="store_true", help="recompute instead of reading the run's leakage.json")
    p.add_argument("--json", help="output JSON path")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_leakage)

    p = sub.add_parser("benchmark", help="every method and its controls over seeds: leaderboard and comparisons")
    from fairaudit.benchmark import command as benchmark_command

    benchmark_command.add_arguments(p)
    p.set_defaults(func=benchmark_command.run)

    p = sub.add_parser("demo", help="the shipped demo models: list them, --rebuild them into assets/, or --check")
    p.add_argument("--dataset", help="comma-separated datasets (default: every shipped demo model)")
    p.add_argument("--rebuild", action="store_true", help="retrain each recipe on the CPU and write it to assets/demo/")
    p.add_argument("--check", action="store_true", help="retrain each recipe and check it equals the shipped file")
    p.set_defaults(func=cmd_demo)

    sub.add_parser("datasets", help="list registered datasets").set_defaults(func=cmd_datasets)
    sub.add_parser("models", help="list model architectures").set_defaults(func=cmd_models)
    p = sub.add_parser("metrics", help="list every metric and disparity: label, kind, direction and definition")
    p.add_argument("--json", nargs="?", const="-", help="write the catalogue as JSON to this file (on stdout "
                                                         "without a path)")
    p.set_defaults(func=cmd_metrics)
    __import__("fairaudit.gate.cli", fromlist=["add_parser"]).add_parser(sub)  # check: the CI gate
    __import__("fairaudit.slices.cli", fromlist=["add_parser"]).add_parser(sub)  # slices: slice discovery
    __import__("fairaudit.faces.cli", fromlist=["add_parser"]).add_parser(sub)  # identify: face recognition
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        _check_arguments(args)
        return args.func(args)
    except FairauditError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fairaudit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
