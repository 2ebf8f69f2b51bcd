"""``pmsim sensitivity``: the command line of a study (pmsim.sensitivity.study) or of a set of
studies (``experiments/robustness.yaml``, pmsim.sensitivity.robustness)."""

from __future__ import annotations

import json
import sys


def add_parser(sub) -> None:
    se = sub.add_parser(
        "sensitivity",
        help="rank the costs by influence and say in what share of the cost space a verdict holds",
    )
    se.add_argument(
        "workload",
        help="workload preset or YAML path; or a studies file (experiments/robustness.yaml)",
    )
    se.add_argument(
        "--designs", nargs="+", metavar="DESIGN", help="designs, the first the baseline"
    )
    se.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a workload key or a cost"
    )
    se.add_argument(
        "--samples",
        type=int,
        default=8,
        metavar="N",
        help="Morris trajectories and Sobol base samples (rounded up to a power of 2); default 8",
    )
    se.add_argument(
        "--sobol-samples",
        type=int,
        metavar="N",
        help="Sobol base samples if not --samples (rounded up to a power of 2)",
    )
    se.add_argument("--keep", type=int, default=6, metavar="K", help="costs kept for Sobol (6)")
    se.add_argument("--seed", type=int, default=1)
    se.add_argument("--out", metavar="DIR", help="output folder (default sensitivity/NAME)")
    se.add_argument("--workers", type=int, metavar="N", help="local worker processes")
    where = se.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="a Dask cluster's scheduler")
    where.add_argument("--scheduler-file", metavar="FILE", help="a Dask scheduler file")
    se.add_argument("--quiet", action="store_true", help="no progress")
    se.add_argument("--json", action="store_true", help="print one JSON object: ranking, verdicts")
    se.set_defaults(func=run)


def run(args) -> int:
    from pmsim.errors import ConfigError
    from pmsim.sensitivity.robustness import is_studies_file, run_studies
    from pmsim.sensitivity.study import parse_sets, run_study
    from pmsim.sweeps.executors import sigterm_interrupts

    kw = dict(
        workers=args.workers,
        scheduler=args.scheduler,
        scheduler_file=args.scheduler_file,
        progress=not args.quiet and not args.json,
    )
    with sigterm_interrupts():
        try:
            if is_studies_file(args.workload):
                res = run_studies(args.workload, args.out, **kw)
                out = {"studies": res}
            else:
                if not args.designs:
                    raise ConfigError(
                        "--designs: give at least one design (e.g. --designs old new)"
                    )
                res = run_study(
                    args.workload,
                    args.designs,
                    parse_sets(args.set),
                    args.samples,
                    args.out,
                    sobol_samples=args.sobol_samples,
                    seed=args.seed,
                    keep=args.keep,
                    **kw,
                )
                out = {k: res[k] for k in ("workload", "designs", "ranking", "verdicts")}
        except KeyboardInterrupt:
            print(
                "pmsim sensitivity: interrupted; finished runs are written, run the same command "
                "again to resume",
                file=sys.stderr,
            )
            return 130
        except RuntimeError as e:
            print(f"pmsim sensitivity: {e}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(out, default=str))
    else:
        for r in res if isinstance(res, list) else [res]:
            print(format_study(r))
    return 0


def format_study(r: dict) -> str:
    lines = [
        f"{r['workload']} ({', '.join(f'{k}={v}' for k, v in r['sets'].items()) or 'as preset'}): "
        f"{len(r['costs'])} costs screened ({r['runs']['morris']} runs), "
        f"{len(r['screened'])} kept for Sobol ({r['runs']['sobol']} runs)"
    ]
    for d, metrics in r["ranking"].items():
        for m, names in metrics.items():
            lines.append(f"  {d} {m}: {', '.join(names[:4]) or '-'}")
    for v in r["verdicts"]:
        lines.append(
            f"  verdict: {v['name']}: holds in {v['share']:.0%} [{v['ci95_low']:.0%}, "
            f"{v['ci95_high']:.0%}] of the cost space ({v['samples']} samples); hinges on "
            f"{', '.join(v['hinges'])}"
        )
    if r.get("figures"):
        lines.append(f"  figures: {', '.join(r['figures'])}")
    return "\n".join(lines)
