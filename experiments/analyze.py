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
"""

import argparse
import dataclasses
import json
import math
import os
import sys
from typing import Dict, List, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import tf_softmoe  # noqa: E402,F401  (Keras 2 before TensorFlow)
import numpy as np  # noqa: E402

from experiments import sweep as sweep_lib  # noqa: E402
from tf_softmoe import metrics  # noqa: E402

SCORE_COLUMNS = {"train": "train_episode_return", "eval": "eval_episode_return"}
SCORES = ("auto",) + tuple(SCORE_COLUMNS)
METRIC_LABELS = {"iqm": "IQM", "median": "Median", "mean": "Mean",
                 "optimality_gap": "Optimality gap"}


# ---------------------------------------------------------------------------
# Reading runs.


@dataclasses.dataclass
class RunRecord:
    """One expected run and what its directory holds.

    Attributes:
      condition, game, seed: the run's cell.
      run_dir: its directory.
      scheduled_iterations: iterations it was scheduled for (sweep.json or
        config.json; None if unknown).
      returns: score per written iteration (NaN where no episode ended).
      agent_steps: agent steps at the end of each written iteration.
      score: the score it is read with: "train" or "eval".
    """
    condition: str
    game: str
    seed: int
    run_dir: str
    scheduled_iterations: Optional[int] = None
    returns: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    agent_steps: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    score: str = "train"

    @property
    def iterations(self):
        return len(self.returns)


def _read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def protocol_score(record):
    """The score the paper reports for a run: "eval" for DER (Atari 100k)
    runs, "train" otherwise. The protocol is read from the run's
    config.json; a run without one counts as DER when its condition is
    named der_* (the flag files' naming)."""
    config = _read_json(os.path.join(record.run_dir, "config.json"))
    if config and "protocol" in config:
        return "eval" if config["protocol"] == "der" else "train"
    return "eval" if record.condition.startswith("der_") else "train"


def read_run(record, score_column):
    """Fills `record.returns` and `record.agent_steps` from its metrics.csv."""
    import pandas as pd  # pylint: disable=import-outside-toplevel
    path = os.path.join(record.run_dir, sweep_lib.METRICS_FILE)
    if not os.path.isfile(path):
        return record
    frame = pd.read_csv(path)
    if frame.empty:
        return record
    if score_column not in frame.columns:
        raise ValueError(
            f"{path} has no column {score_column!r}" + (
                " (the run was trained with --eval_episodes=0; use --score=train)"
                if score_column.startswith("eval") else "") + ".")
    frame = frame.sort_values("iteration").drop_duplicates("iteration", keep="last")
    record.returns = pd.to_numeric(frame[score_column], errors="coerce").to_numpy(
        dtype=np.float64)
    record.agent_steps = pd.to_numeric(frame["agent_steps"], errors="coerce").to_numpy(
        dtype=np.float64)
    if record.scheduled_iterations is None:
        config = _read_json(os.path.join(record.run_dir, "config.json"))
        if config:
            record.scheduled_iterations = int(config["schedule"]["num_iterations"])
    return record


def discover_runs(sweep_root, conditions=None, score="train"):
    """Every expected run of a sweep root, read.

    Args:
      sweep_root: directory laid out <condition>/<game>/seed_<s>/.
      conditions: names to keep (None: all found).
      score: "auto" (each run's protocol's: `protocol_score`), "train" or
        "eval".

    Returns:
      A list of `RunRecord`, sorted by condition (in `conditions` order),
      game and seed.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {list(SCORES)}, got {score!r}.")
    if not os.path.isdir(sweep_root):
        raise FileNotFoundError(f"Sweep root {sweep_root} does not exist.")
    records = {}
    plan = _read_json(os.path.join(sweep_root, sweep_lib.SWEEP_FILE)) or {"runs": {}}
    for key, entry in plan.get("runs", {}).items():
        cell = (entry["condition"], entry["game"], int(entry["seed"]))
        records[cell] = RunRecord(*cell, run_dir=os.path.join(sweep_root, key),
                                  scheduled_iterations=entry.get("num_iterations"))
    for condition, game, seed, run_dir in sweep_lib.existing_run_directories(sweep_root):
        records.setdefault((condition, game, seed),
                           RunRecord(condition, game, seed, run_dir=run_dir))
    if conditions is not None:
        unknown = [c for c in conditions if c not in {cell[0] for cell in records}]
        if unknown:
            print(f"Note: no runs of {', '.join(unknown)} under {sweep_root}.")
        order = {name: i for i, name in enumerate(conditions)}
        records = {cell: r for cell, r in records.items() if cell[0] in order}
    else:
        order = {}
    ordered = sorted(records.values(), key=lambda r: (
        order.get(r.condition, 0), r.condition, r.game, r.seed))
    for record in ordered:
        record.score = protocol_score(record) if score == "auto" else score
    return [read_run(record, SCORE_COLUMNS[record.score]) for record in ordered]


# ---------------------------------------------------------------------------
# Scores.


def forward_fill(values):
    """Replaces each NaN by the last finite value before it (leading NaNs stay)."""
    values = np.array(values, dtype=np.float64)
    last = np.nan
    for i, value in enumerate(values):
        if math.isfinite(value):
            last = value
        else:
            values[i] = last
    return values


def human_normalized(game, score):
    """HNS of a raw score, or None when the game has no reference scores."""
    try:
        return metrics.human_normalized_score(game, score)
    except ValueError:
        return None


def has_reference_scores(game):
    try:
        metrics.reference_scores(game)
    except ValueError:
        return False
    return True


@dataclasses.dataclass
class RunScore:
    """A run's status and scores at the analysed horizon."""
    record: RunRecord
    status: str           # complete, incomplete (k/T), missing, no episode ended
    curve: np.ndarray             # forward-filled raw score per iteration
    final_raw: float
    final_hns: float


def score_runs(records, horizon, final_iterations=1):
    """Status and final scores of every run at `horizon` iterations.

    Args:
      records: `RunRecord`s.
      horizon: iterations a run must have reached to count.
      final_iterations: iterations at the end averaged into the final score.

    Returns:
      A list of `RunScore`, one per record.
    """
    if final_iterations < 1:
        raise ValueError(f"final_iterations must be >= 1, got {final_iterations}.")
    scored = []
    for record in records:
        started = os.path.isfile(os.path.join(record.run_dir, "config.json"))
        if record.iterations == 0 and not started:
            scored.append(RunScore(record, "missing", np.zeros(0), math.nan, math.nan))
            continue
        if record.iterations < horizon:
            scored.append(RunScore(record, f"incomplete ({record.iterations}/{horizon})",
                                   np.zeros(0), math.nan, math.nan))
            continue
        curve = forward_fill(record.returns[:horizon])
        window = curve[max(0, horizon - final_iterations):horizon]
        final_raw = float(np.mean(window)) if np.all(np.isfinite(window)) else math.nan
        if not math.isfinite(final_raw):
            scored.append(RunScore(record, "no episode ended", curve, math.nan, math.nan))
            continue
        hns = human_normalized(record.game, final_raw)
        scored.append(RunScore(record, "complete", curve, final_raw,
                               math.nan if hns is None else float(hns)))
    return scored


@dataclasses.dataclass
class ConditionData:
    """The score arrays of one condition over the aggregated games.

    Attributes:
      seeds: the seeds used (the same for every game), R of them.
      final: human-normalised final scores [R, games].
      curves: human-normalised scores per iteration [R, games, iterations].
      dropped_runs: runs that counted but were left out to keep a full
        matrix ("game seed s").
    """
    seeds: List[int]
    final: np.ndarray
    curves: np.ndarray
    dropped_runs: List[str]


def build_matrices(scored, conditions, games):
    """Per-condition [runs, games] matrices on a common set of games.

    Args:
      scored: `RunScore`s.
      conditions: condition names in display order.
      games: candidate games (in order).

    Returns:
      (games_used, {condition: ConditionData}, excluded): the games with
      reference scores in which every condition has a counted run, the
      data, and {game: reason} for the games left out.
    """
    counted = {}
    for item in scored:
        if item.status == "complete":
            counted.setdefault((item.record.condition, item.record.game), {})[
                item.record.seed] = item
    excluded, used = {}, []
    for game in games:
        if not has_reference_scores(game):
            excluded[game] = "no human/random reference scores (raw scores only)"
            continue
        lacking = [c for c in conditions if not counted.get((c, game))]
        if lacking:
            excluded[game] = f"no counted run of {', '.join(lacking)}"
            continue
        used.append(game)
    data = {}
    if not used:
        return used, data, excluded
    for condition in conditions:
        per_game = [counted[(condition, game)] for game in used]
        runs = min(len(seeds) for seeds in per_game)
        final = np.zeros((runs, len(used)))
        horizon = len(next(iter(per_game[0].values())).curve)
        curves = np.zeros((runs, len(used), horizon))
        dropped, seeds_used = [], None
        for g, (game, by_seed) in enumerate(zip(used, per_game)):
            chosen = sorted(by_seed)[:runs]
            dropped += [f"{game} seed {s}" for s in sorted(by_seed)[runs:]]
            seeds_used = chosen if seeds_used is None else seeds_used
            for r, seed in enumerate(chosen):
                final[r, g] = by_seed[seed].final_hns
                curves[r, g] = metrics.human_normalized_score(game, by_seed[seed].curve)
        data[condition] = ConditionData(seeds_used, final, curves, dropped)
    return used, data, excluded


# ---------------------------------------------------------------------------
# The analysis.


@dataclasses.dataclass
class Analysis:
    """Everything the report shows (pandas DataFrames)."""
    conditions: List[str]
    games: List[str]
    games_used: List[str]
    excluded_games: Dict[str, str]
    horizon: int
    per_run: "object"
    aggregates: "object"
    curves: "object"
    improvement: "object"
    baseline: Optional[str]
    backends: Dict[str, str]
    settings: Dict[str, object]


def analyze(sweep_root, conditions=None, score="auto", iterations=None,
            final_iterations=1, baseline=None, reps=2000, confidence=0.95, seed=0,
            backend="auto", curve_backend="numpy", poi_backend="numpy"):
    """Reads a sweep and computes every table of the report.

    Args:
      sweep_root: the sweep directory.
      conditions: conditions to analyse, in display order (None: all found).
      score: "auto" (the paper's: evaluation returns for DER runs, training
        returns for Rainbow/DQN), "train" or "eval".
      iterations: the horizon; None: the largest scheduled number of
        iterations among the runs (the largest written if none is known).
      final_iterations: iterations averaged into a run's final score.
      baseline: condition the probabilities of improvement compare against;
        None: the first condition.
      reps, confidence, seed: bootstrap settings.
      backend: aggregate intervals: "auto" (rliable if installed), "rliable"
        or "numpy".
      curve_backend, poi_backend: the same for learning curves and
        probabilities of improvement (NumPy by default: rliable evaluates
        them in Python loops, ~100x slower).

    Returns:
      An `Analysis`.
    """
    import pandas as pd  # pylint: disable=import-outside-toplevel
    records = discover_runs(sweep_root, conditions, score)
    if not records:
        raise ValueError(f"No runs under {sweep_root}"
                         + (f" for {', '.join(conditions)}" if conditions else "") + ".")
    if conditions is None:
        conditions = list(dict.fromkeys(r.condition for r in records))
    else:
        conditions = [c for c in conditions if any(r.condition == c for r in records)]
    games = sorted({r.game for r in records})
    if iterations is None:
        scheduled = [r.scheduled_iterations for r in records if r.scheduled_iterations]
        iterations = max(scheduled) if scheduled else max(r.iterations for r in records)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}.")
    baseline = baseline or conditions[0]
    if baseline not in conditions:
        raise ValueError(f"baseline {baseline!r} is not among the conditions "
                         f"{conditions}.")
    scored = score_runs(records, iterations, final_iterations)
    per_run = pd.DataFrame([{
        "condition": s.record.condition, "game": s.record.game, "seed": s.record.seed,
        "status": s.status, "iterations": s.record.iterations,
        "final_raw_score": s.final_raw, "final_human_normalized_score": s.final_hns,
        "score_column": SCORE_COLUMNS[s.record.score],
        "run_dir": os.path.relpath(s.record.run_dir, sweep_root)} for s in scored])
    games_used, data, excluded = build_matrices(scored, conditions, games)
    backends = {"aggregates": metrics.resolve_backend(backend),
                "learning_curves": metrics.resolve_backend(curve_backend),
                "probability_of_improvement": metrics.resolve_backend(poi_backend)}
    aggregate_rows, curve_rows, poi_rows = [], [], []
    steps = _median_agent_steps(scored, iterations)
    for condition in conditions:
        if condition not in data:
            continue
        item = data[condition]
        estimates = metrics.interval_estimates(
            item.final, reps=reps, confidence=confidence, seed=seed, backend=backend)
        for name in metrics.DEFAULT_METRICS:
            estimate = estimates[name]
            aggregate_rows.append({
                "condition": condition, "metric": name, "point": estimate.point,
                "lower": estimate.lower, "upper": estimate.upper,
                "runs_per_game": item.final.shape[0], "games": item.final.shape[1]})
        valid = np.all(np.isfinite(item.curves), axis=(0, 1))
        if valid.any():
            curve = metrics.learning_curve_estimates(
                item.curves[:, :, valid], metric="iqm", reps=reps, confidence=confidence,
                seed=seed, backend=curve_backend)
            for index, iteration in enumerate(np.flatnonzero(valid)):
                curve_rows.append({
                    "condition": condition, "iteration": int(iteration),
                    "agent_steps": steps[iteration], "iqm": curve.point[index],
                    "lower": curve.lower[index], "upper": curve.upper[index]})
        if condition != baseline and baseline in data:
            estimate = metrics.probability_of_improvement_interval(
                item.final, data[baseline].final, reps=reps, confidence=confidence,
                seed=seed, backend=poi_backend)
            poi_rows.append({"condition": condition, "baseline": baseline,
                             "probability": estimate.point, "lower": estimate.lower,
                             "upper": estimate.upper})
    used_columns = {}
    for record in records:
        used_columns.setdefault(SCORE_COLUMNS[record.score], []).append(record.condition)
    settings = {"sweep_root": sweep_root, "score": score,
                "score_columns": {column: sorted(set(names))
                                  for column, names in used_columns.items()},
                "final_iterations": final_iterations, "reps": reps,
                "confidence": confidence, "seed": seed,
                "dropped_runs": {c: d.dropped_runs for c, d in data.items()
                                 if d.dropped_runs},
                "seeds_used": {c: d.seeds for c, d in data.items()}}
    return Analysis(
        conditions=conditions, games=games, games_used=games_used,
        excluded_games=excluded, horizon=iterations, per_run=per_run,
        aggregates=pd.DataFrame(aggregate_rows, columns=[
            "condition", "metric", "point", "lower", "upper", "runs_per_game", "games"]),
        curves=pd.DataFrame(curve_rows, columns=[
            "condition", "iteration", "agent_steps", "iqm", "lower", "upper"]),
        improvement=pd.DataFrame(poi_rows, columns=[
            "condition", "baseline", "probability", "lower", "upper"]),
        baseline=baseline, backends=backends, settings=settings)


def _median_agent_steps(scored, horizon):
    """Agent steps at the end of each iteration (median over counted runs)."""
    columns = [s.record.agent_steps[:horizon] for s in scored
               if s.status == "complete" and len(s.record.agent_steps) >= horizon]
    if not columns:
        return [float(i + 1) for i in range(horizon)]
    return [float(v) for v in np.median(np.stack(columns), axis=0)]


# ---------------------------------------------------------------------------
# Output.


def _format_interval(point, lower, upper):
    return f"{point:.3f} [{lower:.3f}, {upper:.3f}]"


def _markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _format_steps(value):
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def plot_learning_curves(analysis, path, title=None):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for condition in analysis.conditions:
        rows = analysis.curves[analysis.curves.condition == condition]
        if rows.empty:
            continue
        frames = 4 * rows.agent_steps.to_numpy()
        iqm = rows.iqm.to_numpy()
        line = axis.errorbar(frames, iqm, yerr=[iqm - rows.lower, rows.upper - iqm],
                             marker="o", markersize=3, capsize=3, label=condition)
        axis.fill_between(frames, rows.lower, rows.upper, alpha=0.2,
                          color=line.lines[0].get_color())
    axis.set_xlabel("Frames (4 per agent step)")
    axis.set_ylabel("IQM human-normalised score")
    axis.xaxis.set_major_formatter(
        matplotlib.ticker.FuncFormatter(lambda x, _: _format_steps(x)))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(title or "IQM learning curves (95 % stratified-bootstrap CIs)",
                   fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_aggregate_intervals(analysis, path, title=None):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
    conditions = [c for c in analysis.conditions
                  if c in set(analysis.aggregates.condition)]
    names = list(metrics.DEFAULT_METRICS)
    figure, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names),
                                                        0.5 * len(conditions) + 1.5),
                                sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, name in zip(axes, names):
        for i, condition in enumerate(conditions):
            row = analysis.aggregates[(analysis.aggregates.condition == condition)
                                      & (analysis.aggregates.metric == name)].iloc[0]
            color = colors[i % len(colors)]
            axis.barh(i, row.upper - row.lower, left=row.lower, height=0.6,
                      color=color, alpha=0.6)
            axis.vlines(row.point, i - 0.3, i + 0.3, color="black", linewidth=1.5)
        axis.set_title(METRIC_LABELS[name], fontsize=10)
        axis.grid(axis="x", alpha=0.3)
        axis.set_xlabel("Human-normalised score")
    axes[0].set_yticks(range(len(conditions)))
    axes[0].set_yticklabels(conditions, fontsize=8)
    axes[0].invert_yaxis()
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_probability_of_improvement(analysis, path, title=None):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
    rows = analysis.improvement
    figure, axis = plt.subplots(figsize=(8, 0.5 * max(1, len(rows)) + 1.6))
    for i, row in enumerate(rows.itertuples()):
        axis.barh(i, row.upper - row.lower, left=row.lower, height=0.6, alpha=0.6)
        axis.vlines(row.probability, i - 0.3, i + 0.3, color="black", linewidth=1.5)
    axis.axvline(0.5, color="gray", linestyle="--", linewidth=1)
    axis.set_yticks(range(len(rows)))
    axis.set_yticklabels(list(rows.condition), fontsize=8)
    axis.invert_yaxis()
    axis.set_xlim(0, 1)
    axis.set_xlabel(f"P(condition > {analysis.baseline}), 95 % CI")
    axis.grid(axis="x", alpha=0.3)
    figure.suptitle(title or "Probability of improvement", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_outputs(analysis, out_dir, label=None, title=None):
    """Writes the CSV tables, the three PNG plots and report.md to `out_dir`.

    Returns:
      The path of report.md.
    """
    os.makedirs(out_dir, exist_ok=True)
    analysis.per_run.to_csv(os.path.join(out_dir, "per_run.csv"), index=False)
    analysis.aggregates.to_csv(os.path.join(out_dir, "aggregates.csv"), index=False)
    analysis.curves.to_csv(os.path.join(out_dir, "learning_curves.csv"), index=False)
    analysis.improvement.to_csv(os.path.join(out_dir, "probability_of_improvement.csv"),
                                index=False)
    plots = []
    if not analysis.aggregates.empty:
        plot_aggregate_intervals(analysis, os.path.join(out_dir, "aggregate_intervals.png"),
                                 title)
        plots.append(("Aggregates with 95 % intervals", "aggregate_intervals.png"))
    if not analysis.curves.empty:
        plot_learning_curves(analysis, os.path.join(out_dir, "learning_curves.png"), title)
        plots.append(("IQM learning curves", "learning_curves.png"))
    if not analysis.improvement.empty:
        plot_probability_of_improvement(
            analysis, os.path.join(out_dir, "probability_of_improvement.png"), title)
        plots.append(("Probability of improvement", "probability_of_improvement.png"))
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as handle:
        handle.write(render_report(analysis, plots, label, title))
    return path


def render_report(analysis, plots=(), label=None, title=None):
    """The markdown report of an `Analysis`."""
    settings = analysis.settings
    lines = [f"# {title or 'Sweep analysis'}", ""]
    if label:
        lines += [f"> **{label}**", ""]
    confidence = int(round(100 * settings["confidence"]))
    lines += [
        "## Settings", "",
        f"- Sweep root: `{settings['sweep_root']}`",
        f"- Score (`--score={settings['score']}`): "
        + "; ".join(f"`{column}` for {', '.join(names)}"
                    for column, names in sorted(settings["score_columns"].items()))
        + " (mean return of the training episodes that ended in an iteration, or "
        "of the evaluation games after it; an iteration without one carries the "
        "previous score forward)",
        f"- Horizon: {analysis.horizon} iterations; final score = mean of the last "
        f"{settings['final_iterations']} iteration(s); learning curves leave out "
        "the first iterations of a condition until every one of its runs has "
        "ended an episode",
        "- Human-normalised with the random/human table of "
        "`tf_softmoe/metrics/data/atari_human_random.csv`",
        f"- Intervals: {confidence} % percentile, stratified bootstrap, "
        f"{settings['reps']} replicates, seed {settings['seed']}; backends: "
        + ", ".join(f"{k} = {v}" for k, v in analysis.backends.items()),
        ""]
    lines += ["## Runs", ""]
    per_run = analysis.per_run
    header = ["condition"] + analysis.games
    rows = []
    for condition in analysis.conditions:
        row = [condition]
        for game in analysis.games:
            cell = per_run[(per_run.condition == condition) & (per_run.game == game)]
            row.append(f"{(cell.status == 'complete').sum()}/{len(cell)}")
        rows.append(row)
    lines += ["Counted runs / expected runs per condition and game:", "",
              _markdown_table(header, rows), ""]
    problems = per_run[per_run.status != "complete"]
    if problems.empty:
        lines += ["Every expected run is complete.", ""]
    else:
        lines += [f"Not counted ({len(problems)} runs):", ""]
        lines += [f"- {r.condition} / {r.game} / seed {r.seed}: {r.status} "
                  f"(`{r.run_dir}`)" for r in problems.itertuples()]
        lines += [""]
    if analysis.excluded_games:
        lines += ["Games left out of the human-normalised aggregates:", ""]
        lines += [f"- {game}: {reason}" for game, reason in analysis.excluded_games.items()]
        lines += [""]
    for condition, dropped in settings["dropped_runs"].items():
        lines += [f"- {condition}: left out {', '.join(dropped)} to keep the same "
                  "number of runs in every game (the bootstrap needs a full matrix)."]
    if settings["dropped_runs"]:
        lines += [""]
    lines += ["## Aggregate human-normalised scores", ""]
    if analysis.aggregates.empty:
        lines += ["No game has a counted run of every condition: nothing to aggregate.",
                  ""]
    else:
        lines += [f"Games aggregated ({len(analysis.games_used)}): "
                  f"{', '.join(analysis.games_used)}.", ""]
        header = ["condition", "runs/game"] + [
            f"{METRIC_LABELS[m]} [{confidence} % CI]" for m in metrics.DEFAULT_METRICS]
        rows = []
        for condition in analysis.conditions:
            subset = analysis.aggregates[analysis.aggregates.condition == condition]
            if subset.empty:
                continue
            cells = [condition, int(subset.runs_per_game.iloc[0])]
            for name in metrics.DEFAULT_METRICS:
                r = subset[subset.metric == name].iloc[0]
                cells.append(_format_interval(r.point, r.lower, r.upper))
            rows.append(cells)
        lines += [_markdown_table(header, rows), "",
                  "Optimality gap: lower is better.", ""]
    if not analysis.improvement.empty:
        lines += [f"## Probability of improvement over {analysis.baseline}", ""]
        rows = [[r.condition, _format_interval(r.probability, r.lower, r.upper)]
                for r in analysis.improvement.itertuples()]
        lines += [_markdown_table(["condition", f"P(condition > baseline) "
                                   f"[{confidence} % CI]"], rows), ""]
    lines += ["## Final raw scores per game", "",
              "Mean over the counted runs (number of runs in brackets); the human-"
              "normalised score of that mean below it when the game has reference "
              "scores.", ""]
    header = ["condition"] + analysis.games
    rows = []
    for condition in analysis.conditions:
        row = [condition]
        for game in analysis.games:
            cell = per_run[(per_run.condition == condition) & (per_run.game == game)
                           & (per_run.status == "complete")]
            if cell.empty:
                row.append("-")
                continue
            mean = float(cell.final_raw_score.mean())
            hns = human_normalized(game, mean)
            row.append(f"{mean:.1f} ({len(cell)})" + (
                "" if hns is None else f"<br>HNS {float(hns):.3f}"))
        rows.append(row)
    lines += [_markdown_table(header, rows), ""]
    if plots:
        lines += ["## Plots", ""]
        lines += [f"### {caption}\n\n![{caption}]({name})\n" for caption, name in plots]
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--score", default="auto", choices=list(SCORES),
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
    figure = sweep_lib.load_figure(args.figure) if args.figure else None
    conditions = (sweep_lib.split_list(args.conditions) if args.conditions
                  else list(figure.conditions) if figure else None)
    baseline = args.baseline or (figure.baseline if figure else None)
    title = args.title or (figure.title if figure else None)
    try:
        analysis = analyze(
            args.sweep_root, conditions=conditions, score=args.score,
            iterations=args.iterations, final_iterations=args.final_iterations,
            baseline=baseline, reps=args.reps, confidence=args.confidence, seed=args.seed,
            backend=args.backend, curve_backend=args.curve_backend,
            poi_backend=args.poi_backend)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from error
    out_dir = args.out_dir or os.path.join(args.sweep_root, "analysis")
    report = write_outputs(analysis, out_dir, label=args.label, title=title)
    missing = analysis.per_run[analysis.per_run.status != "complete"]
    print(f"Report: {report}")
    print(f"  {len(analysis.per_run) - len(missing)}/{len(analysis.per_run)} runs counted"
          f"; games aggregated: {len(analysis.games_used)}/{len(analysis.games)}; "
          f"backends: {analysis.backends}")
    for row in missing.itertuples():
        print(f"  not counted: {row.condition} / {row.game} / seed {row.seed}: {row.status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
