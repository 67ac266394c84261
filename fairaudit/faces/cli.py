"""``python -m fairaudit identify``: a face-recognition audit per group.

``identify --dataset synthetic-identities --model demo --sensitive Male [--rank 1,5] [--fmr 1e-3]
[--gallery-sweep ids|images] --json out.json`` embeds the split with the model's ``g``, and writes per group the
leave-one-out rank-k accuracy with intervals (``identification``), the error ratio to the best group
(``error_ratio``), the L2 ratio, verification rates at one global threshold (``verification``) and, when asked,
rank-1 against the group's share of the gallery (``gallery_sweep``); ``--html`` adds a self-contained report.
"""

from __future__ import annotations

import argparse

from fairaudit.errors import FairauditError


def add_parser(sub) -> argparse.ArgumentParser:
    from fairaudit import cli as main_cli

    p = sub.add_parser("identify", help="face recognition per group: rank-k identification, FMR/FNMR verification, "
                                        "gallery-composition sweeps")
    main_cli._add_data_args(p)
    main_cli._add_model_args(p)
    p.add_argument("--num-classes", type=int, help="output classes of a checkpoint that cannot tell (e.g. a "
                                                   "TorchScript file); the audit itself uses only its g")
    p.add_argument("--rank", default="1,5", help="ranks k of rank-k accuracy, comma-separated (default 1,5)")
    p.add_argument("--fmr", type=float, default=1e-3, help="target overall false-match rate of the threshold")
    p.add_argument("--gallery-sweep", choices=("ids", "images"), help="vary a group's share of the gallery's "
                                                                        "identities or of its images per identity")
    p.add_argument("--sweep-group", help="the group whose share varies (default: the first group)")
    p.add_argument("--seeds", type=int, default=3, help="galleries drawn per share in a sweep (default 3)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the intervals (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", required=True, help="output JSON path")
    p.add_argument("--html", help="also write a self-contained HTML report of the same sections")
    p.set_defaults(func=cmd_identify)

    t = sub.add_parser("face-train-sweep", help="train the demo face model at several training mixes of men and "
                                                 "women and audit each per group")
    t.add_argument("--kind", choices=("ids", "images"), default="ids",
                   help="vary the men's share of the training identities (ids) or of the training photos (images)")
    t.add_argument("--mixes", help="men's shares, comma-separated (default ids: 0,0.25,0.5,0.75,1; "
                                   "images: 0.1,0.3,0.5,0.7,0.9)")
    t.add_argument("--sensitive", default="Male", help="person attribute whose groups are audited (default Male)")
    t.add_argument("--data-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="synthetic-identities option, repeatable (e.g. n_train_ids=100)")
    t.add_argument("--seeds", type=int, default=3, help="models trained per mix (default 3)")
    t.add_argument("--epochs", type=int, help="training epochs (default: the demo recipe's 10)")
    t.add_argument("--fmr", type=float, default=1e-3, help="target overall false-match rate of the threshold")
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--json", required=True, help="output JSON path")
    t.set_defaults(func=cmd_train_sweep)
    return p


def _mixes(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise FairauditError(f"--mixes expects numbers separated by commas, e.g. 0,0.5,1; got {text!r}.") from None


def cmd_train_sweep(args) -> int:
    from fairaudit.cli import _data_options, _write_json
    from fairaudit.faces.train_sweep import training_sweep

    if args.seeds < 1:
        raise FairauditError("--seeds must be at least 1.")
    if not 0.0 < args.fmr < 1.0:
        raise FairauditError(f"--fmr must lie strictly between 0 and 1, got {args.fmr}.")
    result = training_sweep(args.kind, _mixes(args.mixes), tuple(range(args.seeds)),
                            data_options=_data_options(args.data_opt), sensitive=args.sensitive,
                            epochs=args.epochs, fmr=args.fmr, device=args.device, batch_size=args.batch_size,
                            progress=lambda fraction, message: print(message, flush=True))
    _write_json(result, args.json)
    for g in result["groups"]:
        cells = "  ".join(f"{m:g}: {r:.3f}" for m, r in zip(result["share"], result["rank1"][g]))
        print(f"{g} rank1 by men's share  {cells}")
    print(f"-> {args.json}")
    return 0


def _ranks(text: str) -> list[int]:
    try:
        ranks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise FairauditError(f"--rank expects whole numbers separated by commas, e.g. 1,5; got {text!r}.") from None
    if not ranks or min(ranks) < 1:
        raise FairauditError(f"--rank expects whole numbers ≥ 1, e.g. 1,5; got {text!r}.")
    return ranks


def cmd_identify(args) -> int:
    from fairaudit.cli import _data_options, _progress_bar, _train_progress, _write_json
    from fairaudit.data import load_dataset
    from fairaudit.faces.audit import run_face_audit
    from fairaudit.faces.demo import resolve_face_model
    from fairaudit.faces.engine import check_identity_dataset

    ranks = _ranks(args.rank)
    if not 0.0 < args.fmr < 1.0:
        raise FairauditError(f"--fmr must lie strictly between 0 and 1, got {args.fmr}.")
    if args.seeds < 1:
        raise FairauditError("--seeds must be at least 1.")
    options = _data_options(args.data_opt)
    dataset = load_dataset(args.dataset, args.split, args.target, args.sensitive, args.data_dir, **options)
    check_identity_dataset(dataset)
    bar, update = _train_progress("training the demo face model")
    with bar:
        model, description = resolve_face_model(args.model, dataset, data_options=options, device=args.device,
                                                allow_torchscript=args.allow_torchscript, progress=update,
                                                num_classes=args.num_classes)
    with _progress_bar(len(dataset), f"embedding {args.dataset}/{args.split}") as pbar:
        audit = run_face_audit(dataset, model, ranks=ranks, fmr=args.fmr, sweep=args.gallery_sweep,
                               sweep_group=args.sweep_group, seeds=tuple(range(args.seeds)), n_boot=args.bootstrap,
                               seed=args.seed, device=args.device, batch_size=args.batch_size,
                               progress=lambda done, total: pbar.update(done - pbar.n),
                               meta={"model": description, "data_options": options})
    result = audit.to_dict()
    _write_json(result, args.json)
    if args.html:
        from fairaudit.faces.report import write_face_report

        write_face_report(audit, dataset, args.html)
    k = f"rank{ranks[0]}"
    parts = [f"{g} {k} {e[k]:.3f}" for g, e in result["identification"]["groups"].items()]
    ratio = result["error_ratio"]["max"]
    ver = result["verification"]
    print(f"{'  '.join(parts)}  error ratio {ratio if ratio is None else format(ratio, '.2f')}  "
          f"threshold {ver['threshold']:.3f}  -> {args.json}")
    return 0
