r"""Aggregates a sweep the way the paper reports it.

Reads <sweep_root>/<condition>/<game>/seed_<s>/metrics.csv (written by
experiments/train.py, laid out by experiments/sweep.py), and writes to
--out_dir:

    report.md                  settings, run coverage, missing runs, the
                               aggregate table, probabilities of improvement,
                               per-game raw scores, the plots
    aggregates.csv             IQM, mean, median, optimality gap of the
                               human-normalised final scores, with 95 %
                               stratified-bootstrap intervals, per condition
    per_run.csv                every expected run: status, final raw score,
                               human-normalised score, the column scored
    learning_curves.csv        IQM per iteration with its interval
    run_curves.csv             every run's raw score per iteration (counted
                               or not), drawn per game in run_curves.png
    probability_of_improvement.csv
    learning_curves.png        IQM over training with interval bands
    aggregate_intervals.png    the four aggregates with their intervals
    probability_of_improvement.png

Scores (SPEC section 6; Agarwal et al. 2021):
- The score the paper reports for the run's protocol (--score=auto, the
  default): Rainbow/DQN runs (protocol "dopamine") score on the mean return of
  the training episodes that ended in an iteration (`train_episode_return`);
  DER runs (protocol "der", Atari 100k) on the mean return of the evaluation
  games played after it (`eval_episode_return`: 100 games, as the reference's
  `DataEfficientAtariRunner` reports). --score=train or --score=eval takes one
  column for every run. An iteration without a score of its own (no episode
  ended, or no evaluation after it with --eval_schedule=final) carries the
  previous iteration's forward.
- A run's final score is the mean over its last --final_iterations
  iterations (1: the last one) of the analysed horizon.
- Human-normalised score = (score - random) / (human - random) with the
  57-game table of tf_softmoe/metrics/data (its README cites the sources).
  Games without reference scores (e.g. AirRaid) are listed with their raw
  scores and left out of every human-normalised aggregate.
- Aggregates over the [runs, games] matrix of a condition: IQM, mean, median,
  optimality gap (gamma = 1), 95 % percentile intervals from the stratified
  bootstrap (tf_softmoe.metrics; rliable's implementation with
  --backend=rliable/auto, the NumPy one with --backend=numpy).

Partial sweeps: the expected runs are those of <sweep_root>/sweep.json plus
every run directory found. A run counts once it has reached the horizon
(--iterations, default: the runs' scheduled number of iterations); the others
are listed as missing or incomplete. The games aggregated are the games with
reference scores in which every condition has at least one counted run; a
condition with R runs in its sparsest game uses the R lowest seeds of every
game (the bootstrap needs a full matrix). The report says what was left out.

Example:
    python experiments/analyze.py --sweep_root=runs/fig01 \
        --figure=fig01_experts_and_scale

The library behind it: tf_softmoe.runs.analysis (tables, report) and
tf_softmoe.runs.plots.
"""

import argparse
import os
import sys

from tf_softmoe.runs import analysis
from tf_softmoe.runs import conditions as conditions_lib


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep_root", required=True)
    parser.add_argument("--out_dir", default=None,
                        help="Where the report goes (default: <sweep_root>/analysis).")
    parser.add_argument("--figure", default=None,
                        help="A figure of experiments/configs/figures/: its "
                        "conditions, baseline and title.")
    parser.add_argument("--conditions", default=None,
                        help="Comma-separated conditions (default: the figure's, "
                        "else every condition found).")
    parser.add_argument("--baseline", default=None,
                        help="Condition for the probabilities of improvement "
                        "(default: the figure's, else the first condition).")
    parser.add_argument("--score", default="auto", choices=list(analysis.SCORES),
                        help="auto: the paper's (evaluation returns for DER runs, "
                        "training returns for Rainbow/DQN); train or eval: that "
                        "column for every run.")
    parser.add_argument("--iterations", type=int, default=None,
                        help="Horizon in iterations (default: as scheduled).")
    parser.add_argument("--final_iterations", type=int, default=1,
                        help="Iterations averaged into a run's final score.")
    parser.add_argument("--reps", type=int, default=2000,
                        help="Bootstrap replicates (rliable's default is 50000).")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="auto", choices=["auto", "rliable", "numpy"],
                        help="Bootstrap of the aggregate intervals.")
    parser.add_argument("--curve_backend", default="numpy",
                        choices=["auto", "rliable", "numpy"])
    parser.add_argument("--poi_backend", default="numpy",
                        choices=["auto", "rliable", "numpy"])
    parser.add_argument("--title", default=None)
    parser.add_argument("--label", default=None,
                        help="A line shown in bold at the top of the report.")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        figure = conditions_lib.load_figure(args.figure) if args.figure else None
        conditions = (conditions_lib.split_list(args.conditions) if args.conditions
                      else list(figure.conditions) if figure else None)
        baseline = args.baseline or (figure.baseline if figure else None)
        title = args.title or (figure.title if figure else None)
        result = analysis.analyze(
            args.sweep_root, conditions=conditions, score=args.score,
            iterations=args.iterations, final_iterations=args.final_iterations,
            baseline=baseline, reps=args.reps, confidence=args.confidence, seed=args.seed,
            backend=args.backend, curve_backend=args.curve_backend,
            poi_backend=args.poi_backend)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from error
    out_dir = args.out_dir or os.path.join(args.sweep_root, "analysis")
    if result.conditions_without_runs:
        print(f"Note: no runs of {', '.join(result.conditions_without_runs)} under "
              f"{args.sweep_root}.")
    report = analysis.write_outputs(result, out_dir, label=args.label, title=title)
    missing = result.per_run[result.per_run.status != "complete"]
    print(f"Report: {report}")
    print(f"  {len(result.per_run) - len(missing)}/{len(result.per_run)} runs counted"
          f"; games aggregated: {len(result.games_used)}/{len(result.games)}; "
          f"backends: {result.backends}")
    for row in missing.itertuples():
        print(f"  not counted: {row.condition} / {row.game} / seed {row.seed}: {row.status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
