r"""Runs a grid of conditions x games x seeds, locally, on Ray or on Slurm.

Every run is one call of `python experiments/train.py --flagfile=<condition>.flags
--game=<game> --seed=<seed> --root_dir=<sweep_root>/<condition>/<game>/seed_<seed>
[flags after `--`]`, a child process (--backend=local) or a Ray task
(--backend=ray: a local Ray, or a cluster with --ray_address or RAY_ADDRESS)
or a Slurm job (--backend=slurm; both in docs/reproduce.md), with its output in the run directory's train.log. Runs
resume: a finished run (every metrics.csv row, policy/ exported) is skipped,
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

Default workers (local): min(cores // 2, available memory // memory of the
largest run (its replay, ~7 KB per transition, + ~2 GB)), at least 1; with
Ray or Slurm (--backend=slurm: one job per run through submitit, requeued
after a preemption or at its time limit) --workers caps the runs in flight.
Compute estimate (--dry_run): remaining agent steps over the measured rate
(median `train_steps_per_second` of the metrics.csv files under the sweep
root and --rates_from, a --probe_steps run, or --steps_per_second), plus
--startup_seconds per run. Library: tf_softmoe.runs (conditions, sweep, backends).
"""

import argparse
import functools
import os
import sys

from tf_softmoe.runs import conditions
from tf_softmoe.runs import sweep
from tf_softmoe.runs import backends


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
                        "largest run), at least 1; with Ray: a cap on runs at once).")
    parser.add_argument("--backend", default="local", choices=backends.BACKENDS,
                        help="local: child processes here; ray: one Ray task per run; slurm: one "
                        "Slurm job per run (submitit).")
    parser.add_argument("--ray_address", help="A running Ray cluster ('auto', "
                        "'ray://host:10001'; default: RAY_ADDRESS, else a local Ray).")
    parser.add_argument("--cpus_per_run", type=float, help="Ray/Slurm: CPUs per run (Ray 1, Slurm 2).")
    parser.add_argument("--gpus_per_run", type=float,
                        help="Ray: GPUs per run (0; a fraction shares a GPU).")
    parser.add_argument("--max_retries", type=int, help="Ray: retries of a run whose "
                        "worker or node died (3); it resumes from its checkpoint.")
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
    parser.add_argument("--slurm_partition", default=None,
                        help="Slurm partition (default: the cluster's default).")
    parser.add_argument("--slurm_time_minutes", type=int,
                        help="Time limit of each Slurm job (1440); a longer run is checkpointed "
                        "and requeued at the limit.")
    parser.add_argument("--slurm_gpus_per_run", type=int,
                        help="GPUs per Slurm job (whole GPUs; 0).")
    parser.add_argument("--slurm_signal_seconds", type=int,
                        help="Slurm sends SIGUSR2 this long (120 s) before a job's time limit; "
                        "the run checkpoints and the job is requeued.")
    parser.add_argument("--slurm_extra",
                        help="More sbatch options, comma-separated name=value "
                        "(e.g. qos=high,account=myproject,constraint=a100).")
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
    try:
        backend = backends.make_backend(args.backend, units, sweep_root, args.workers,
                                        **options)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error
    with backend:
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
