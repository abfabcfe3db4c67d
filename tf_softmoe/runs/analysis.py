"""Analysis of a sweep the way the paper reports it: plain tables.

Reads <sweep_root>/<condition>/<game>/seed_<s>/metrics.csv (through
`RunDirectory`, laid out by `tf_softmoe.runs.sweep`) and computes:

- per run: status at the horizon, final raw score, human-normalised score;
- per condition: IQM, mean, median and optimality gap of the
  human-normalised final scores with stratified-bootstrap intervals, the
  IQM learning curve, probabilities of improvement over a baseline;

as pandas DataFrames (`Analysis`), and writes them as CSV files, a markdown
report and the plots (`plots`) with `write_outputs`.

Scores (SPEC section 6; Agarwal et al. 2021):
- The score the paper reports for the run's protocol (score="auto"):
  Rainbow/DQN runs (protocol "dopamine") score on the mean return of the
  training episodes that ended in an iteration (`train_episode_return`); DER
  runs (protocol "der", Atari 100k) on the mean return of the evaluation
  games played after it (`eval_episode_return`). An iteration without a
  score of its own carries the previous iteration's forward.
- A run's final score is the mean over its last `final_iterations`
  iterations of the analysed horizon.
- Human-normalised with `tf_softmoe.metrics.human_normalized_score`, the
  project's one normalisation. Games without a human reference score
  (AirRaid among the paper's 20) are listed with their raw scores and left
  out of every human-normalised aggregate.
- A condition with R runs in its sparsest game uses the R lowest seeds of
  every game (the bootstrap needs a full matrix); the report says what was
  left out.
"""

import dataclasses
import math
import os
from typing import Dict, List, Optional

import numpy as np

from tf_softmoe import metrics
from tf_softmoe.metrics import atari_scores
from tf_softmoe.runs import run_directory
from tf_softmoe.runs import sweep

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


def _stored_config(record):
    """The run's config.json as a dict, or None when it has none or it is
    unusable (the run then counts by its metrics alone)."""
    try:
        return run_directory.RunDirectory(record.run_dir).read_config_dict()
    except (FileNotFoundError, run_directory.RunDirectoryError):
        return None


def protocol_score(record):
    """The score the paper reports for a run: "eval" for DER (Atari 100k)
    runs, "train" otherwise. The protocol is read from the run's
    config.json; a run without one counts as DER when its condition is
    named der_* (the flag files' naming)."""
    config = _stored_config(record)
    if config and "protocol" in config:
        return "eval" if config["protocol"] == "der" else "train"
    return "eval" if record.condition.startswith("der_") else "train"


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_run(record, score_column):
    """Fills `record.returns` and `record.agent_steps` from its metrics.csv
    (the last row of an iteration written twice counts)."""
    run = run_directory.RunDirectory(record.run_dir)
    fields, rows = run.read_metrics()
    if not rows:
        return record
    if score_column not in fields:
        if not _evaluates_later(record, score_column):
            raise ValueError(
                f"{run.metrics_path} has no column {score_column!r}" + (
                    " (the run was trained with --eval_episodes=0; use --score=train)"
                    if score_column.startswith("eval") else "") + ".")
        # A run that evaluates only after its last iteration
        # (--eval_schedule=final) and has not got there yet: no score so far
        # (`r.get` below reads NaN).
    by_iteration = {}
    for row in rows:
        by_iteration[int(_number(row["iteration"]))] = row
    ordered = [by_iteration[i] for i in sorted(by_iteration)]
    record.returns = np.array([_number(r.get(score_column)) for r in ordered],
                              np.float64)
    record.agent_steps = np.array([_number(r.get("agent_steps")) for r in ordered],
                                  np.float64)
    if record.scheduled_iterations is None:
        config = _stored_config(record)
        if config:
            record.scheduled_iterations = int(config["schedule"]["num_iterations"])
    return record


def _evaluates_later(record, score_column):
    """Whether `record`'s config.json says it plays evaluation games, so a
    missing evaluation column means none has been played yet."""
    config = _stored_config(record)
    if not score_column.startswith("eval") or not config:
        return False
    episodes = config.get("schedule", {}).get("eval_episodes")
    return isinstance(episodes, (int, float)) and episodes > 0


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
    plan = sweep.read_sweep_file(sweep_root) or {"runs": {}}
    for key, entry in plan.get("runs", {}).items():
        cell = (entry["condition"], entry["game"], int(entry["seed"]))
        records[cell] = RunRecord(*cell, run_dir=os.path.join(sweep_root, key),
                                  scheduled_iterations=entry.get("num_iterations"))
    for condition, game, seed, run_dir in sweep.existing_run_directories(sweep_root):
        records.setdefault((condition, game, seed),
                           RunRecord(condition, game, seed, run_dir=run_dir))
    if conditions is not None:
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
        started = run_directory.RunDirectory(record.run_dir).has_config()
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
        hns = (atari_scores.human_normalized_score(record.game, final_raw)
               if atari_scores.has_human_score(record.game) else math.nan)
        scored.append(RunScore(record, "complete", curve, final_raw, hns))
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
        if not atari_scores.has_human_score(game):
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
    """Everything the report shows (tables as pandas DataFrames).

    Attributes:
      conditions: conditions analysed, in display order.
      games: every game with an expected run.
      games_used: games in the human-normalised aggregates.
      excluded_games: {game: why it is not aggregated}.
      horizon: iterations a run must have reached to count.
      per_run: condition, game, seed, status, iterations, final_raw_score,
        final_human_normalized_score, score_column, run_dir.
      aggregates: condition, metric, point, lower, upper, runs_per_game,
        games.
      curves: condition, iteration, agent_steps, iqm, lower, upper.
      run_curves: condition, game, seed, status, iteration, agent_steps,
        raw_score: the raw score of every iteration every run has written
        (counted or not; NaN where no episode ended), what the per-game
        plot draws. With one or two seeds it says more than the IQM.
      improvement: condition, baseline, probability, lower, upper.
      baseline: the condition of the probabilities of improvement.
      backends: the bootstrap implementation of each table.
      settings: what the report's settings section shows.
      conditions_without_runs: requested conditions with no run found.
    """
    conditions: List[str]
    games: List[str]
    games_used: List[str]
    excluded_games: Dict[str, str]
    horizon: int
    per_run: "object"
    aggregates: "object"
    curves: "object"
    improvement: "object"
    run_curves: "object"
    baseline: Optional[str]
    backends: Dict[str, str]
    settings: Dict[str, object]
    conditions_without_runs: List[str] = dataclasses.field(default_factory=list)


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
    without_runs = []
    if conditions is None:
        conditions = list(dict.fromkeys(r.condition for r in records))
    else:
        found = {r.condition for r in records}
        without_runs = [c for c in conditions if c not in found]
        conditions = [c for c in conditions if c in found]
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
    run_curve_rows = [
        {"condition": s.record.condition, "game": s.record.game, "seed": s.record.seed,
         "status": s.status, "iteration": iteration,
         "agent_steps": s.record.agent_steps[iteration],
         "raw_score": s.record.returns[iteration]}
        for s in scored if s.record.condition in conditions
        for iteration in range(min(s.record.iterations, iterations))]
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
        run_curves=pd.DataFrame(run_curve_rows, columns=[
            "condition", "game", "seed", "status", "iteration", "agent_steps",
            "raw_score"]),
        baseline=baseline, backends=backends, settings=settings,
        conditions_without_runs=without_runs)


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


def write_outputs(analysis, out_dir, label=None, title=None):
    """Writes the CSV tables, the PNG plots and report.md to `out_dir`.

    Returns:
      The path of report.md.
    """
    os.makedirs(out_dir, exist_ok=True)
    analysis.per_run.to_csv(os.path.join(out_dir, "per_run.csv"), index=False)
    analysis.aggregates.to_csv(os.path.join(out_dir, "aggregates.csv"), index=False)
    analysis.curves.to_csv(os.path.join(out_dir, "learning_curves.csv"), index=False)
    analysis.improvement.to_csv(os.path.join(out_dir, "probability_of_improvement.csv"),
                                index=False)
    analysis.run_curves.to_csv(os.path.join(out_dir, "run_curves.csv"), index=False)
    from tf_softmoe.runs import plots  # pylint: disable=import-outside-toplevel
    figures = []
    if not analysis.aggregates.empty:
        plots.plot_aggregate_intervals(analysis, os.path.join(out_dir, "aggregate_intervals.png"),
                                 title)
        figures.append(("Aggregates with 95 % intervals", "aggregate_intervals.png"))
    if not analysis.curves.empty:
        plots.plot_learning_curves(analysis, os.path.join(out_dir, "learning_curves.png"), title)
        figures.append(("IQM learning curves", "learning_curves.png"))
    if not analysis.improvement.empty:
        plots.plot_probability_of_improvement(
            analysis, os.path.join(out_dir, "probability_of_improvement.png"), title)
        figures.append(("Probability of improvement", "probability_of_improvement.png"))
    if analysis.run_curves.raw_score.notna().any():
        plots.plot_run_curves(analysis, os.path.join(out_dir, "run_curves.png"), title)
        figures.append(("Raw score of every run per game", "run_curves.png"))
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as handle:
        handle.write(render_report(analysis, figures, label, title))
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
            row.append(f"{mean:.1f} ({len(cell)})" + (
                f"<br>HNS {atari_scores.human_normalized_score(game, mean):.3f}"
                if atari_scores.has_human_score(game) else ""))
        rows.append(row)
    lines += [_markdown_table(header, rows), ""]
    if plots:
        lines += ["## Plots", ""]
        lines += [f"### {caption}\n\n![{caption}]({name})\n" for caption, name in plots]
    return "\n".join(lines) + "\n"


