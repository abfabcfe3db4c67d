r"""Runs a grid of conditions x games x seeds with local worker processes.

Every run is one call of the train binary,

    python experiments/train.py --flagfile=<condition>.flags --game=<game> \
        --seed=<seed> --root_dir=<sweep_root>/<condition>/<game>/seed_<seed> \
        [flags given after `--`]

started as a subprocess whose output goes to `train.log` in its run
directory. The sweep is resumable: a run whose metrics.csv has a row for
every iteration and whose policy/ is exported is skipped; any other run is
(re)started, and the train binary resumes it from its newest checkpoint.
SIGINT / SIGTERM to the sweep is forwarded to every running child, which
finishes its step, writes a checkpoint and exits; re-running the same
command then carries on.

Examples:

    # A paper figure (experiments/configs/figures/<name>.ini): its conditions,
    # games and seeds. --dry_run prints the plan and the compute it needs.
    python experiments/sweep.py --figure=fig01_experts_and_scale \
        --sweep_root=runs/fig01 --dry_run

    # Any conditions (flag-file names or paths), games and seeds, with
    # train flags passed through after `--`:
    python experiments/sweep.py --sweep_root=runs/demo \
        --conditions=rainbow_impala_flatten_x4,rainbow_impala_softmoe4 \
        --games=Breakout,Qbert --seeds=0,1 -- --num_iterations=2 \
        --steps_per_iteration=500

Default workers: min(cores // 2, available memory // memory of the largest
run (its replay, ~7 KB per transition, + ~2 GB)), at least 1. On a GPU
machine all workers share the accelerator: set --workers yourself.

Compute estimate (--dry_run): remaining agent steps of every run divided by
a measured rate in agent steps per second: the median `train_steps_per_second`
of finished iterations in the metrics.csv files under the sweep root (and
--rates_from), per condition; or a short probe run per condition
(--probe_steps); or --steps_per_second. Each run start adds --startup_seconds
(TensorFlow start, graph tracing, the final export).
Library: tf_softmoe.runs (conditions, sweep, backends.local).
"""

import argparse
import functools
import os
import sys

from tf_softmoe.runs import conditions
from tf_softmoe.runs import sweep
from tf_softmoe.runs.backends import local


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Train flags after `--` go to every run (e.g. -- --num_iterations=2). "
               f"Figures: {', '.join(conditions.figure_names())}.")
    parser.add_argument("--sweep_root", required=True,
                        help="Directory of the sweep: <root>/<condition>/<game>/seed_<s>.")
    parser.add_argument("--figure", help="A figure of experiments/configs/figures/ "
                        "(sets conditions, games and seeds).")
    parser.add_argument("--conditions", help="Comma-separated condition names or flag-"
                        "file paths (instead of, or replacing, the figure's).")
    parser.add_argument("--games", help="Comma-separated games and game sets "
                        f"({', '.join(conditions.game_sets())}); default: the figure's.")
    parser.add_argument("--seeds", help="Seeds, '0,1,2' or '0-4'; default: the "
                        "figure's, else 0-4.")
    parser.add_argument("--workers", type=int, default=None,
                        help="Parallel runs (default: min(cores // 2, memory // "
                        "largest run), at least 1).")
    parser.add_argument("--dry_run", action="store_true",
                        help="Print the plan and its compute estimate; run nothing.")
    parser.add_argument("--probe_steps", type=int, default=0,
                        help="With --dry_run: measure each condition without a "
                        "measured rate by a 2 x N-step probe run (0: no probe).")
    parser.add_argument("--steps_per_second", type=float, default=None,
                        help="Agent steps/s to assume for conditions without a "
                        "measured rate.")
    parser.add_argument("--rates_from", default="",
                        help="Comma-separated sweep roots whose metrics.csv rates "
                        "count as measured too.")
    parser.add_argument("--startup_seconds", type=float, default=60.0,
                        help="Seconds added per run started (process start, graph "
                        "tracing, export).")
    parser.add_argument("--table_seconds", type=float, default=30.0,
                        help="Seconds between progress tables of the running runs "
                        "(0: none).")
    parser.add_argument("train_flags", nargs="*", help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = functools.partial(print, flush=True)
    try:
        figure = conditions.load_figure(args.figure) if args.figure else None
        if args.conditions:
            names = conditions.split_list(args.conditions)
        elif figure:
            names = figure.conditions
        else:
            raise ValueError("give --figure=NAME or --conditions=a,b,c (figures: "
                             f"{', '.join(conditions.figure_names())}).")
        if not args.table_seconds >= 0:
            raise ValueError(f"--table_seconds must be >= 0, got {args.table_seconds}.")
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}.")
        flagfiles = [conditions.find_flagfile(name) for name in names]
        games = conditions.parse_games(args.games or (figure.games if figure else "atari20"))
        seeds = conditions.parse_seeds(args.seeds or (figure.seeds if figure else "0-4"))
        sweep_root = os.path.abspath(args.sweep_root)
        if os.path.exists(sweep_root) and not os.path.isdir(sweep_root):
            raise ValueError(f"--sweep_root={args.sweep_root} is a file; pass a directory.")
        extra_flags = tuple(args.train_flags)
        units = sweep.plan_runs(sweep_root, flagfiles, games, seeds, extra_flags)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from error
    workers = args.workers or sweep.default_workers(units)
    if figure:
        out(f"Figure {figure.name}: {figure.title}\n  paper: {figure.paper}")
    roots = [sweep_root] + [os.path.abspath(p) for p in conditions.split_list(args.rates_from)]
    rates = sweep.measured_rates(roots)
    if args.dry_run and args.probe_steps > 0:
        for flagfile in flagfiles:
            name = conditions.condition_name(flagfile)
            if name not in rates:
                rates[name] = sweep.probe_rate(flagfile, games[0], extra_flags,
                                               steps=args.probe_steps, log=out)
    estimate = sweep.estimate_compute(units, rates, workers, args.startup_seconds,
                                      fallback_rate=args.steps_per_second)
    for line in sweep.describe_plan(units, workers, estimate, measured=rates):
        out(line)
    pending = [unit for unit in units if unit.status.state != "finished"]
    if args.dry_run:
        if pending:
            out("Commands of the unfinished runs:")
        for unit in pending:
            out("  " + sweep.display_command(unit))
        return 0
    sweep.write_sweep_file(sweep_root, units, extra_flags)
    with local.LocalBackend(workers=workers) as backend:
        scheduler = sweep.Scheduler(units, backend, out=out,
                                    progress_seconds=args.table_seconds)
        outcomes = scheduler.run()
    finished = sum(unit.status.state == "finished" for unit in units)
    out(f"Sweep: {finished}/{len(units)} runs finished under {sweep_root}.")
    for outcome in outcomes:
        if not outcome.finished:
            out(f"  unfinished: {outcome.unit.run_dir} (log: {outcome.unit.log_path})")
    if scheduler.stop_signal is not None:
        return 128 + scheduler.stop_signal
    return 0 if finished == len(units) else 1


if __name__ == "__main__":
    sys.exit(main())
