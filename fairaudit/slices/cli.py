"""``python -m fairaudit slices``: slice discovery from a predictions CSV or a model on a dataset.

``slices PREDICTIONS.csv --label y --pred y_hat [--score p] --attributes a,b,c`` slices a table of
existing predictions; ``slices --dataset NAME --model demo|PATH`` runs the model on the split first
and slices over every attribute the dataset has (see :func:`fairaudit.slices.dataset_attributes`).
Writes the JSON of :meth:`fairaudit.slices.SliceReport.to_dict` and prints the top slices.
"""

from __future__ import annotations

import argparse

from fairaudit.errors import FairauditError


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``slices`` on the main parser's subcommands."""
    from fairaudit import cli as main_cli
    from fairaudit.slices import METRICS

    p = sub.add_parser("slices", help="find the attribute intersections where a metric is significantly off")
    p.add_argument("file", nargs="?", help="predictions CSV (or use --dataset and --model)")
    p.add_argument("--label", help="CSV: column of true labels")
    p.add_argument("--pred", help="CSV: column of the decisions made")
    p.add_argument("--score", help="CSV: column of P(y = 1) of a binary target")
    p.add_argument("--attributes", help="columns to slice on, comma-separated (default: every column of the CSV "
                                        "but the label, prediction and score; every attribute of a dataset)")
    p.add_argument("--metric", default="accuracy", choices=list(METRICS))
    p.add_argument("--max-depth", type=int, default=3, help="most conditions in a slice (default 3)")
    p.add_argument("--min-size", type=int, default=50, help="smallest slice tested (default 50 rows)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the gap's interval (0: none)")
    p.add_argument("--alpha", type=float, default=0.05, help="false discovery rate (Benjamini-Hochberg)")
    p.add_argument("--method", choices=("cells", "rows"), default="cells", help="bootstrap scheme")
    p.add_argument("--prune", action="store_true", help="leave out slices implied by a more general one")
    p.add_argument("--top", type=int, default=10, help="slices printed (the JSON holds all)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    main_cli._add_data_args(p, dataset_required=False)
    main_cli._add_model_args(p)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--json", required=True, help="output JSON path")
    p.set_defaults(func=cmd_slices)
    return p


def _csv_inputs(args):
    from pathlib import Path

    from fairaudit.audit.external import predictions_from_frame, read_csv_frame, require_columns

    if not args.label:
        raise FairauditError("slices on a CSV needs --label (and --pred or --score).")
    path = args.file
    frame = read_csv_frame(path)
    preds = predictions_from_frame(frame, args.label, args.pred, [args.label], args.score, source=Path(path).name,
                                   threshold=args.threshold)
    used = {args.label, args.pred, args.score}
    columns = ([c.strip() for c in args.attributes.split(",") if c.strip()] if args.attributes
               else [c for c in frame.columns if c not in used])
    require_columns(frame, columns, str(path))
    if not columns:
        raise FairauditError("name the columns to slice on with --attributes.")
    return preds, frame[columns]


def _dataset_inputs(args):
    from fairaudit.audit import run_audit
    from fairaudit.cli import dataset_and_model
    from fairaudit.slices import dataset_attributes

    dataset, model, _, _ = dataset_and_model(args)
    _, preds = run_audit(dataset, model, threshold=args.threshold, n_boot=0, seed=args.seed, device=args.device,
                         batch_size=args.batch_size)
    table = dataset_attributes(dataset, preds.indices)
    if args.attributes:
        columns = [c.strip() for c in args.attributes.split(",") if c.strip()]
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise FairauditError(f"dataset '{args.dataset}' has no attribute {', '.join(map(repr, missing))}; "
                                 f"available: {', '.join(table.columns)}.")
        table = table[columns]
    return preds, table


def cmd_slices(args) -> int:
    from fairaudit import cli as main_cli
    from fairaudit.slices import describe, find_slices

    if bool(args.file) == bool(args.dataset):
        raise FairauditError("slices needs exactly one source: a predictions CSV or --dataset (with --model).")
    preds, table = _csv_inputs(args) if args.file else _dataset_inputs(args)
    report = find_slices(preds, table, metric=args.metric, max_depth=args.max_depth, min_size=args.min_size,
                         n_boot=args.bootstrap, alpha=args.alpha, seed=args.seed, device=args.device,
                         threshold=args.threshold, method=args.method, prune=args.prune)
    main_cli._write_json(report.to_dict(), args.json)
    print(f"{report.metric}: {report.meta['n_significant']} of {report.n_slices_tested} slices tested significant "
          f"at FDR {report.alpha:g}  -> {args.json}")
    for s in report.slices[: max(0, args.top)]:
        ci = f" [{s['ci'][0]:+.3f}, {s['ci'][1]:+.3f}]" if s["ci"] and None not in s["ci"] else ""
        mark = "*" if s["significant"] else " "
        note = f"  (implied by {describe(s['implied_by'])})" if s.get("implied_by") else ""
        print(f" {mark} {describe(s['slice'])}  n={s['n']}  {s['value']:.3f} vs {s['complement']:.3f}  "
              f"gap {s['gap']:+.3f}{ci}  q={s['q_value']:.2g}{note}")
    return 0
