r"""Runs a grid of conditions x games x seeds, locally, on Ray or on Slurm.

Every run is one call of `python experiments/train.py --flagfile=<condition>.flags
--game=<game> --seed=<seed> --root_dir=<sweep_root>/<condition>/<game>/seed_<seed>
[flags after `--`]`, a child process (--backend=local) or a Ray task
(--backend=ray: a local Ray, or a cluster with --ray_address or RAY_ADDRESS)
or a Slurm job (--backend=slurm; both in docs/reproduce.md), with its output
in the run directory's train.log. Runs resume: a finished run (every metrics.csv row, policy/ exported) is skipped,
any other resumes from its newest checkpoint. SIGINT / SIGTERM makes every
running run write a checkpoint and stop; the same command then carries on.

Examples:

    # A paper figure (experiments/configs/figures/<name>.ini); --dry_run
    # prints the plan and the compute it needs.
    python experiments/sweep.py --figure=fig01_experts_and_scale \
        --sweep_root=runs/fig01 --dry_run
    # Any conditions, games and seeds, train flags after `--`, on Ray:
    python experiments/sweep.py --sweep_root=runs/demo --backend=ray \
        --conditions=rainbow_impala_flatten_x4,rainbow_impala_softmoe4 \
        --games=Breakout,Qbert --seeds=0,1 -- --num_iterations=2

Worker counts, the compute estimate (--dry_run) and the cluster options are
in each flag's help. Library: tf_softmoe.runs (conditions, sweep, backends).
"""

import argparse
import functools
import os
import sys

from tf_softmoe.runs import conditions
from tf_softmoe.runs import sweep
from tf_softmoe.runs import backends


# Options of the cluster backends (None: the backend's default, in brackets).
CLUSTER_FLAGS = (
    ("ray_address", str, "Ray: a running cluster ('auto', 'ray://host:10001'; "
     "default: RAY_ADDRESS, else a local Ray)."),
    ("cpus_per_run", float, "Ray/Slurm: CPUs per run (Ray 1, Slurm 2)."),
    ("gpus_per_run", float, "Ray: GPUs per run (0; a fraction shares a GPU)."),
    ("max_retries", int, "Ray: retries of a run whose worker or node died (3); "
     "it resumes from its checkpoint."),
    ("slurm_partition", str, "Slurm: partition (the cluster's default)."),
    ("slurm_time_minutes", int, "Slurm: time limit of a job (1440); at the limit "
     "the run checkpoints and the job is requeued."),
    ("slurm_gpus_per_run", int, "Slurm: whole GPUs per job (0)."),
    ("slurm_signal_seconds", int, "Slurm: SIGUSR2 comes this long before the "
     "time limit (120)."),
    ("slurm_extra", str, "Slurm: more sbatch options, comma-separated name=value "
     "(e.g. qos=high,account=myproject)."),
)


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
                        "largest run), at least 1; Ray/Slurm: a cap on runs at once).")
    parser.add_argument("--backend", default="local", choices=backends.BACKENDS,
                        help="local: child processes here; ray: one Ray task per "
                        "run; slurm: one Slurm job per run (submitit).")
    for name, kind, text in CLUSTER_FLAGS:
        parser.add_argument(f"--{name}", type=kind, help=text)
    parser.add_argument("--ray_dashboard", action="store_true",
                        help="Ray: start the dashboard with a local Ray.")
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
        options = {key: getattr(args, key) for key in backends.BACKEND_OPTIONS}
        backends.check_backend_options(args.backend, args.workers, **options)
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
    # For the estimate: Slurm queues every run at once; Ray, like local,
    # is bounded by the machine(s) it was given.
    workers = args.workers or (len(units) if args.backend == "slurm"
                               else sweep.default_workers(units))
    if figure:
        out(f"Figure {figure.name}: {figure.title}\n  paper: {figure.paper}")
    roots = [sweep_root] + [os.path.abspath(p) for p in conditions.split_list(args.rates_from)]
    rates = sweep.rates_for(flagfiles, roots, games[0], extra_flags,
                            args.probe_steps if args.dry_run else 0, log=out)
    estimate = sweep.estimate_compute(units, rates, workers, args.startup_seconds,
                                      fallback_rate=args.steps_per_second)
    for line in sweep.describe_plan(units, workers, estimate, measured=rates):
        out(line)
    if args.dry_run:
        for line in sweep.unfinished_commands(units):
            out(line)
        return 0
    sweep.write_sweep_file(sweep_root, units, extra_flags)
    try:
        backend = backends.make_backend(args.backend, units, sweep_root, args.workers,
                                        **options)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error
    return sweep.run_units(units, backend, sweep_root, args.table_seconds, out=out)


if __name__ == "__main__":
    sys.exit(main())
