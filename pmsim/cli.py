"""The ``pmsim`` command line. Bad input exits with status 2 and one line naming it."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from pmsim.errors import ConfigError, one_line


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the whole usage otherwise)
        raise ConfigError(f"{self.prog}: {message}")


def _time(text):
    from pmsim.units import parse_time

    try:
        return parse_time(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _dist(text):
    from pmsim.units import parse_dist

    try:
        return parse_dist(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _lockbench(args) -> int:
    from pmsim.costs import parse_assignment
    from pmsim.lockbench import LockBenchSpec, run_lockbench

    overrides = dict(parse_assignment(s) for s in args.set)
    res = run_lockbench(
        LockBenchSpec(
            lock=args.lock,
            threads=args.threads,
            cores=args.cores,
            hold=args.hold,
            think=args.think,
            arrivals=args.arrivals,
            ideal=args.ideal,
            overrides=overrides,
            duration=args.duration,
            warmup=args.warmup,
            seed=args.seed,
            wake=args.wake,
        )
    )
    if args.json:
        print(json.dumps(res, indent=2, sort_keys=True))
        return 0
    print(
        f"lockbench: {res['lock']}, {res['threads']} threads on {res['cores']} cores, {res['mode']} loop, "
        f"hold {res['hold']}, {'think ' + str(res['think']) if res['think'] else 'arrivals ' + str(res['arrivals'])}"
        f"{', ideal' if res['ideal'] else ''}"
    )
    print(
        f"  throughput      {res['throughput_per_s']:,.0f} /s  (±{res['ci95_throughput_per_s']:,.0f}, 95% CI)"
    )
    print(
        f"  wait            mean {res['mean_wait_s'] * 1e6:.3f} us, p50 {res['p50_wait_s'] * 1e6:.3f} us, "
        f"p99 {res['p99_wait_s'] * 1e6:.3f} us"
    )
    print(
        f"  hold            mean {res['mean_hold_s'] * 1e6:.3f} us; lock utilization {res['lock_utilization']:.3f}"
    )
    print(
        f"  spinning cores  {res['mean_spinning_cores']:.2f} (mean); acquisitions {res['acquisitions']:,}"
    )
    return 0


def _validate(args) -> int:
    from pmsim.validate import format_rows, run_validation

    rows = run_validation(quick=args.quick)
    print(format_rows(rows))
    return 0 if all(r.passed for r in rows) else 1


def _costs(args) -> int:
    from pmsim.costs import cost_params, markdown_table

    if args.markdown:
        print(markdown_table())
        return 0
    for p in cost_params().values():
        print(
            f"{p.name:42} {p.default:>10g} {p.unit:6} [{p.range[0]:g}, {p.range[1]:g}] {p.role}"
            + (f"  {p.derivation()}" if p.derived_from else "")
        )
    return 0


def _run(args) -> int:
    from pmsim.limits import check_run
    from pmsim.workload.load import load_spec
    from pmsim.workload.result import check_run_folder, format_summary
    from pmsim.workload.runner import run_workload

    if (args.trace_window or args.trace_max_events is not None) and not args.trace:
        raise ConfigError("--trace-window and --trace-max-events need --trace FILE")
    window = (0.0, float("inf"))
    if args.trace_max_events is not None and args.trace_max_events < 1:
        raise ConfigError(f"--trace-max-events: must be >= 1, got {args.trace_max_events}")
    if args.trace_window:
        from pmsim.trace import parse_window

        window = parse_window(args.trace_window)
    spec = load_spec(args.workload, args.set, args.seed)
    check_run(spec, args.allow_large)
    if args.out:
        check_run_folder(Path(args.out))  # before the run, not after it
    if args.trace:
        from pmsim.trace import MAX_EVENTS, trace_run

        cap = MAX_EVENTS if args.trace_max_events is None else args.trace_max_events
        res, trace = trace_run(spec, args.design, window, cap)
        trace.write(args.trace)
        if trace.message():
            print(f"pmsim: {trace.message()}", file=sys.stderr)
    else:
        res = run_workload(spec, args.design)
    if args.out:
        res.write(args.out)
    if args.json:
        print(json.dumps(res.summary_with_provenance(), indent=2, sort_keys=True))
    else:
        print(format_summary(res.summary))
        p = res.provenance
        print(
            f"  ({p['wall_s']:.2f} s wall, {p['sim_ops_per_wall_s']:,.0f} simulated ops per wall second"
            + (f"; tables in {args.out})" if args.out else ")")
        )
    return 0


def _sweep(args) -> int:
    from pmsim.sweeps.api import sweep
    from pmsim.sweeps.executors import sigterm_interrupts
    from pmsim.sweeps.report import format_sweep

    with sigterm_interrupts():
        try:
            res = sweep(
                args.experiment,
                args.out,
                workers=args.workers,
                scheduler=args.scheduler,
                scheduler_file=args.scheduler_file,
                resume=not args.no_resume,
                progress=not args.quiet,
                allow_large=args.allow_large,
            )
        except KeyboardInterrupt:
            print(
                "pmsim sweep: interrupted; finished runs are written, run the same command again "
                "to resume",
                file=sys.stderr,
            )
            return 130
    print(format_sweep(res))
    return 1 if len(res.failures) else 0


def _plot(args) -> int:
    from pmsim.plots import write_figures
    from pmsim.sweeps.api import SweepResult

    res = SweepResult.load(args.results)
    res.require_ok("pmsim plot")
    out = args.out or res.out / "figures"
    paths = write_figures(res, out, formats=tuple(args.format))
    print(f"{len(paths)} files in {out}/:")
    for path in paths:
        print(f"  {path.name}")
    return 0


def _report(args) -> int:
    from pmsim.report import write_report

    md, page = write_report(args.results, args.out, figures=not args.no_figures)
    print(
        f"report: {md} and {page}"
        + ("" if args.no_figures else f"; figures in {md.parent / 'figures'}/")
    )
    return 0


def _locks(args) -> int:
    from pmsim.workload.contention import IDENT, format_locks, load_tables, view

    if args.top is not None and args.top < 1:
        raise ConfigError(f"locks: --top: must be >= 1, got {args.top}")
    tables = load_tables(args.run_dir)
    if args.json:
        rows = view(tables, args.by, args.top).to_dict(orient="records")
        lines = tables["lines"].drop(columns=list(IDENT), errors="ignore")
        print(
            json.dumps(
                {"by": args.by, "rows": rows, "lines": lines.to_dict(orient="records")},
                indent=2,
                default=float,
            )
        )
    else:
        print(format_locks(tables, args.by, args.top))
    return 0


def _experiments(args) -> int:
    from pmsim.sweeps.spec import experiments
    from pmsim.workload.load import preset_question

    for name, path in experiments().items():
        print(f"{name:24} {preset_question(path)}")
    from pmsim.sweeps.spec import studies

    for name, path in studies().items():  # run with pmsim sensitivity NAME
        print(f"{name:24} (pmsim sensitivity {name}) {preset_question(path)}")
    return 0


def _designs(args) -> int:
    from pmsim.designs import designs

    for name, cls in designs().items():
        print(f"{name:20} {cls.summary}")
    return 0


def _workloads(args) -> int:
    from pmsim.workload.load import preset_question, presets

    for name, path in presets().items():
        print(f"{name:16} {preset_question(path)}")
    return 0


LARGE = "run even when estimated over an hour (a sweep: two) or half the free memory"


def build_parser() -> argparse.ArgumentParser:
    from pmsim.lockbench import LOCK_KINDS
    from pmsim.sync.qlock import WAKE_POLICIES

    p = _Parser(prog="pmsim", description="Simulate the Akaros page map's OLD and NEW designs.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    lb = sub.add_parser("lockbench", help="a lock microbenchmark (closed or open loop)")
    lb.add_argument("--lock", required=True, choices=LOCK_KINDS)
    lb.add_argument("--threads", required=True, type=int)
    lb.add_argument("--cores", type=int, help="default: --threads")
    lb.add_argument("--hold", required=True, type=_dist, help="critical-section time, e.g. exp:1us")
    mode = lb.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--think", type=_dist, help="closed loop: time between release and next request"
    )
    mode.add_argument("--arrivals", type=_dist, help="open loop: request interarrival times")
    lb.add_argument(
        "--ideal", action="store_true", help="zero every lock, cache-line, wake and switch cost"
    )
    lb.add_argument(
        "--set", action="append", default=[], metavar="COST=VALUE", help="override a cost"
    )
    lb.add_argument(
        "--wake",
        choices=WAKE_POLICIES,
        help="qlock wake policy (default waker_core)",
    )
    lb.add_argument("--duration", type=_time, default=_time("20ms"))
    lb.add_argument("--warmup", type=_time, default=_time("2ms"))
    lb.add_argument("--seed", type=int, default=1)
    lb.add_argument("--json", action="store_true")
    lb.set_defaults(func=_lockbench)

    va = sub.add_parser("validate", help="lock and queue mechanics vs exact queueing results")
    va.add_argument("--quick", action="store_true", help="a subset, in under a minute")
    va.set_defaults(func=_validate)

    ru = sub.add_parser(
        "run", help="simulate a workload (a preset name or a YAML path) on one design"
    )
    ru.add_argument("workload", help="preset name (pmsim workloads) or path to a YAML file")
    ru.add_argument("--design", default="new", help="design name (pmsim designs); default new")
    ru.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a workload key (dotted: machine.cores=32, duration=20ms) or a cost by name",
    )
    ru.add_argument("--seed", type=int, help="the run's seed (default: the workload's)")
    ru.add_argument(
        "--out", metavar="DIR", help="write Parquet tables, summary.json and spec.yaml here"
    )
    ru.add_argument("--json", action="store_true", help="print the summary as JSON")
    ru.add_argument(
        "--trace",
        metavar="FILE",
        help="write a timeline (Chrome trace-event JSON: ui.perfetto.dev, chrome://tracing)",
    )
    ru.add_argument(
        "--trace-window",
        metavar="A:B",
        help="only what overlaps simulated times A..B (e.g. 1ms:2ms; either side may be empty)",
    )
    ru.add_argument(
        "--trace-max-events",
        type=int,
        metavar="N",
        help="at most N trace events (default 1,000,000); the trace says where it was cut",
    )
    ru.add_argument("--allow-large", action="store_true", help=LARGE)
    ru.set_defaults(func=_run)

    sw = sub.add_parser("sweep", help="run an experiment: designs x factor points x replications")
    sw.add_argument("experiment", help="experiment name (pmsim experiments) or path to a YAML file")
    sw.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default: the experiment's out, else sweeps/NAME)",
    )
    sw.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local worker processes (default: CPU count; 1 runs in this process)",
    )
    where = sw.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on the Dask cluster at ADDRESS (tcp://host:8786)",
    )
    where.add_argument(
        "--scheduler-file", metavar="FILE", help="run on the Dask cluster this scheduler file names"
    )
    sw.add_argument(
        "--no-resume", action="store_true", help="discard runs already written and start over"
    )
    sw.add_argument("--quiet", action="store_true", help="no progress bar (batch jobs)")
    sw.add_argument("--allow-large", action="store_true", help=LARGE)
    sw.set_defaults(func=_sweep)
    pl = sub.add_parser("plot", help="the standard figures of a finished sweep (PNG and SVG)")
    pl.add_argument(
        "results", metavar="RESULTS", help="a sweep's output folder (sweeps/NAME, results/...)"
    )
    pl.add_argument("--out", metavar="DIR", help="where the figures go (default RESULTS/figures)")
    pl.add_argument(
        "--format",
        nargs="+",
        choices=("png", "svg", "pdf"),
        default=["png", "svg"],
        help="file formats (default png svg)",
    )
    pl.set_defaults(func=_plot)
    rp = sub.add_parser(
        "report", help="the design-review report of a finished sweep (Markdown and HTML)"
    )
    rp.add_argument(
        "results", metavar="RESULTS", help="a sweep's output folder (sweeps/NAME, results/...)"
    )
    rp.add_argument(
        "--out",
        metavar="DIR",
        help="where report.md, report.html and figures/ go (default RESULTS)",
    )
    rp.add_argument(
        "--no-figures", action="store_true", help="the report without drawing the figures"
    )
    rp.set_defaults(func=_report)
    lk = sub.add_parser(
        "locks", help="a run's lockstat table, by lock, call site or holder, and line bounces"
    )
    lk.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by pmsim run --out")
    lk.add_argument("--top", type=int, metavar="N", help="only the first N rows (by total wait)")
    lk.add_argument(
        "--by",
        choices=("lock", "site", "holder"),
        default="lock",
        help="per lock class (default), per lock and call site, or per holder (blame)",
    )
    lk.add_argument("--json", action="store_true", help="print the rows as JSON")
    lk.set_defaults(func=_locks)
    ex = sub.add_parser("experiments", help="list the experiments and the question each answers")
    ex.set_defaults(func=_experiments)

    de = sub.add_parser("designs", help="list the page-map designs, one line each")
    de.set_defaults(func=_designs)
    wo = sub.add_parser("workloads", help="list the workload presets and the question each answers")
    wo.set_defaults(func=_workloads)

    from pmsim.sensitivity.cli import add_parser as add_sensitivity

    add_sensitivity(sub)

    co = sub.add_parser("costs", help="list the cost parameters")
    co.add_argument("--markdown", action="store_true", help="as docs/costs.md")
    co.set_defaults(func=_costs)
    return p


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except ConfigError as e:
        print(f"pmsim: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (pmsim run ... | head): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush is quiet
        return 141
    except KeyboardInterrupt:
        print("pmsim: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(
            "pmsim: error: out of memory (the estimate fell short: see docs/sweeps.md, Limits)",
            file=sys.stderr,
        )
        return 1
    except OSError as e:
        return _os_error(e)
    except Exception as e:  # noqa: BLE001 - a bug: one line, the traceback kept in a file
        return _crash(e)


def _os_error(e: OSError) -> int:
    """One line for what the system refused: a path we may not read or write (bad input, 2), a
    full disk or another failure of the machine (1). Files are written whole or not at all, so
    nothing half-written is left: rerunning once it is fixed resumes."""
    where = f" {one_line(str(e.filename))}" if e.filename else ""
    if isinstance(e, PermissionError):
        print(f"pmsim: error:{where}: permission denied", file=sys.stderr)
        return 2
    if e.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e):
        what = "no space left on the device" + (f" writing{where}" if where else "")
        then = "free some and run the same command again"
    else:
        what = one_line(" ".join(str(e).split())) or type(e).__name__
        then = "run the same command again once that is mended"
    print(f"pmsim: error: {what}; nothing half-written is left: {then}", file=sys.stderr)
    return 1


def _crash(e: Exception) -> int:
    """An error pmsim did not expect (a bug): one line, and the traceback in a file to report."""
    import tempfile
    import traceback

    line = " ".join(f"{type(e).__name__}: {e}".split())[:300]
    try:
        fd, path = tempfile.mkstemp(prefix="pmsim-crash-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write("".join(traceback.format_exception(e)))
        kept = f"; traceback in {path}"
    except OSError:
        kept = ""
    print(f"pmsim: internal error (a bug, please report it): {line}{kept}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
