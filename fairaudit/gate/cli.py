"""``python -m fairaudit check``: the CI gate's command line.

Exactly one source: ``--predictions CSV`` (columns as in ``audit-predictions``),
``--dataset … --model …`` (an audit run here) or ``--run RUN_ID`` (the stored
audit of a finished mitigation run, ``--stage after`` by default). Exit code
0: every rule passes; 1: some rule fails; 3: none fails but some are
inconclusive; 2: usage or input error.
"""

from __future__ import annotations

import argparse
import sys

from fairaudit.errors import FairauditError


class _RuleAction(argparse.Action):
    """``--max`` and ``--min`` append ``(kind, NAME=VALUE)`` to one list, so rules keep the order given."""

    def __call__(self, parser, namespace, values, option_string=None):
        rules = list(getattr(namespace, self.dest, None) or [])
        rules.append((option_string.lstrip("-"), values))
        setattr(namespace, self.dest, rules)


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``check`` on the main parser's subcommands."""
    from fairaudit import cli as main_cli

    p = sub.add_parser("check", help="CI gate: policy rules on an audit's intervals (exit 0 pass, 1 fail, "
                                     "3 inconclusive)")
    source = p.add_argument_group("source (exactly one)")
    source.add_argument("--predictions", metavar="CSV", help="a predictions table (with --label, --pred/--score, "
                                                             "--sensitive)")
    source.add_argument("--run", metavar="RUN_ID", help="a finished mitigation run")
    main_cli._add_data_args(p, dataset_required=False)
    main_cli._add_model_args(p)
    p.add_argument("--label", help="--predictions: column of true labels")
    p.add_argument("--pred", help="--predictions: column of the decisions made")
    p.add_argument("--score", help="--predictions: column of P(y = 1) of a binary target")
    p.add_argument("--stage", choices=("before", "after"), default="after", help="--run: which audit (default after)")
    p.add_argument("--policy", help="policy TOML file ([gate], [max], [min]; see the README)")
    p.add_argument("--max", action=_RuleAction, dest="rules", metavar="NAME=VALUE",
                   help="rule NAME <= VALUE, repeatable")
    p.add_argument("--min", action=_RuleAction, dest="rules", metavar="NAME=VALUE",
                   help="rule NAME >= VALUE, repeatable")
    p.add_argument("--min-group-size", type=int, help="flag smaller groups (default: the policy's, else 30)")
    p.add_argument("--bootstrap", type=int, help="bootstrap resamples of the audit (default: the policy's, else 1000)")
    p.add_argument("--seed", type=int, help="bootstrap seed (default: the policy's, else 0)")
    p.add_argument("--threshold", type=float, default=0.5, help="decision threshold on scores")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--junit", metavar="OUT.xml", help="write the verdicts as JUnit XML")
    p.add_argument("--json", metavar="OUT.json", help="write the verdicts as JSON")
    p.set_defaults(func=cmd_check)
    return p


def _policy(args):
    from fairaudit.gate.policy import load_policy, parse_pairs

    rules = [rule for kind, pair in args.rules or [] for rule in parse_pairs([pair], kind)]
    policy = load_policy(args.policy).with_rules(rules)
    if args.min_group_size is not None:
        if args.min_group_size < 1:
            raise FairauditError("--min-group-size must be ≥ 1.")
        policy.min_group_size = args.min_group_size
    if args.bootstrap is not None:
        policy.bootstrap = args.bootstrap
    if args.seed is not None:
        policy.seed = args.seed
    if not policy.rules:
        raise FairauditError("check: no rule to check; give --policy with [max]/[min] entries or --max/--min.")
    return policy


def _audit(args, policy) -> tuple[dict, float | None, dict]:
    """The audit dict, S_R (runs only) and a description of the source."""
    given = [name for name, value in (("--predictions", args.predictions), ("--dataset", args.dataset),
                                      ("--run", args.run)) if value]
    if len(given) != 1:
        raise FairauditError("check: give exactly one of --predictions CSV, --dataset (with --model) or --run RUN_ID"
                             + (f", not {' and '.join(given)}." if given else "."))
    if args.predictions:
        from fairaudit.audit import audit_predictions
        from fairaudit.audit.external import read_predictions_csv

        if not args.label or not args.sensitive:
            raise FairauditError("check: --predictions needs --label and --sensitive (and --pred or --score).")
        preds = read_predictions_csv(args.predictions, args.label, args.pred, args.sensitive, args.score,
                                     threshold=args.threshold)
        report = audit_predictions(preds, threshold=args.threshold, n_boot=policy.bootstrap, seed=policy.seed,
                                   device=args.device, meta={"source": str(args.predictions)})
        return report.to_dict(), None, {"predictions": str(args.predictions)}
    if args.dataset:
        from fairaudit.audit import run_audit
        from fairaudit.cli import dataset_and_model

        dataset, model, description, _ = dataset_and_model(args)
        report, _ = run_audit(dataset, model, threshold=args.threshold, n_boot=policy.bootstrap, seed=policy.seed,
                              device=args.device, batch_size=args.batch_size, meta={"model": description})
        return report.to_dict(), None, {"dataset": args.dataset, "split": args.split, "model": description}
    from fairaudit.jobs import get_run, run_result

    result = run_result(get_run(args.run))
    report = result.get(args.stage)
    if not report:
        raise FairauditError(f"run '{args.run}' has no {args.stage} audit.")
    s_r = ((result.get("summary") or {}).get(args.stage) or {}).get("s_r")
    return report, s_r, {"run": args.run, "stage": args.stage, "method": result.get("method"),
                         "dataset": result.get("dataset")}


def cmd_check(args) -> int:
    from fairaudit.cli import _write_json
    from fairaudit.gate.check import evaluate
    from fairaudit.gate.junit import write_junit
    from fairaudit.io_safety import check_output_file

    if args.junit:
        check_output_file(args.junit)
    policy = _policy(args)
    report, s_r, source = _audit(args, policy)
    result = evaluate(report, policy, s_r=s_r, source=source)
    for rule in result.rules:
        print(f"{rule.verdict.upper():12s} {rule.name}: {rule.message}")
    for group in result.flagged_groups:
        print(f"  flagged group '{group['group']}': {'; '.join(group['reasons'])}", file=sys.stderr)
    counts = {v: sum(r.verdict == v for r in result.rules) for v in ("pass", "fail", "inconclusive")}
    print(f"check: {result.outcome} ({counts['pass']} pass, {counts['fail']} fail, "
          f"{counts['inconclusive']} inconclusive; n = {result.n}) -> exit {result.exit_code}")
    if args.json:
        _write_json(result.to_dict(), args.json)
    if args.junit:
        write_junit(result, args.junit)
    return result.exit_code
