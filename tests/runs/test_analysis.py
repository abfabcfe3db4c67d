"""tf_softmoe.runs.analysis on a fake sweep directory (analysis_fakes.py) with hand-computed values.

The fake sweep has conditions A and B, games Breakout, Pong and AirRaid (no
human reference score), seeds 0 and 1, two iterations per run; B / Pong /
seed 1 is expected (sweep.json) but missing. Reference scores: Breakout
random 1.7, human 30.5; Pong random -20.7, human 14.6.

Final human-normalised scores (rows seeds 0, 1; columns Breakout, Pong):
  A = [[1.0, 0.2], [0.5, 0.6]]    (A / Pong / seed 1 ends on an iteration
                                   without an episode: its 0.6 is carried
                                   forward from iteration 0)
  B: Pong has only seed 0, so B uses seed 0 in both games: [[0.1, 0.4]].

  A: sorted 0.2 0.5 0.6 1.0, IQM drops one from each end -> 0.55;
     mean 0.575; per-game means 0.75, 0.4 -> median 0.575;
     optimality gap 1 - 0.575 = 0.425.
  B: IQM of two scores drops none -> 0.25 = mean = median; gap 0.75.
  P(A > B): Breakout {1.0, 0.5} vs {0.1} -> 1; Pong {0.2, 0.6} vs {0.4}
     -> 0.5; mean 0.75.
  IQM curve of A at iteration 0: HNS 0, 0, 0, 0.6 -> middle two -> 0.
"""

import csv
import json
import os

import numpy as np
import pytest

from tests.runs.analysis_fakes import BREAKOUT, MISSING, PONG, RETURNS, make_sweep, raw
from tf_softmoe.runs import analysis


@pytest.fixture(name="sweep_root")
def fixture_sweep_root(tmp_path):
    return make_sweep(str(tmp_path / "sweep"))


def aggregate(result, condition, metric):
    rows = result.aggregates
    return rows[(rows.condition == condition) & (rows.metric == metric)].iloc[0]


def test_aggregates_match_hand_computed_values(sweep_root):
    result = analysis.analyze(sweep_root, reps=300, backend="numpy")
    assert result.games_used == ["Breakout", "Pong"]
    assert "AirRaid" in result.excluded_games
    expected = {"A": {"iqm": 0.55, "mean": 0.575, "median": 0.575,
                      "optimality_gap": 0.425},
                "B": {"iqm": 0.25, "mean": 0.25, "median": 0.25,
                      "optimality_gap": 0.75}}
    for condition, values in expected.items():
        for metric, value in values.items():
            row = aggregate(result, condition, metric)
            assert row.point == pytest.approx(value, abs=1e-9), (condition, metric)
            assert row.lower <= row.point + 1e-12 <= row.upper + 2e-12
    assert aggregate(result, "A", "iqm").runs_per_game == 2
    assert aggregate(result, "B", "iqm").runs_per_game == 1
    assert result.settings["dropped_runs"] == {"B": ["Breakout seed 1"]}
    poi = result.improvement.iloc[0]
    assert (poi.condition, poi.baseline) == ("B", "A")


def test_probability_of_improvement_against_a_chosen_baseline(sweep_root):
    result = analysis.analyze(sweep_root, baseline="B", reps=300, backend="numpy")
    poi = result.improvement.iloc[0]
    assert (poi.condition, poi.baseline) == ("A", "B")
    assert poi.probability == pytest.approx(0.75)
    assert poi.lower <= 0.75 <= poi.upper


def test_missing_run_and_raw_only_game_are_reported(sweep_root):
    result = analysis.analyze(sweep_root, reps=300, backend="numpy")
    per_run = result.per_run.set_index(["condition", "game", "seed"])
    assert per_run.loc[MISSING, "status"] == "missing"
    assert (per_run.status == "complete").sum() == len(RETURNS)
    # Forward fill: the last iteration had no episode, iteration 0's score counts.
    assert per_run.loc[("A", "Pong", 1), "final_raw_score"] == pytest.approx(
        raw(PONG, 0.6))
    assert np.isnan(per_run.loc[("A", "AirRaid", 0), "final_human_normalized_score"])
    assert per_run.loc[("A", "AirRaid", 0), "final_raw_score"] == 700.0
    text = analysis.render_report(result)
    assert "B / Pong / seed 1: missing" in text
    assert "AirRaid: no human/random reference scores" in text
    assert "| B | 2/2 | 2/2 | 1/2 |" in text  # AirRaid, Breakout, Pong columns


def test_started_run_without_metrics_is_incomplete_not_missing(sweep_root):
    run_dir = os.path.join(sweep_root, *MISSING[:2], f"seed_{MISSING[2]}")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "config.json"), "w") as handle:
        handle.write("{}")
    result = analysis.analyze(sweep_root, reps=200, backend="numpy")
    per_run = result.per_run.set_index(["condition", "game", "seed"])
    assert per_run.loc[MISSING, "status"] == "incomplete (0/2)"


def test_learning_curve_values(sweep_root):
    result = analysis.analyze(sweep_root, reps=300, backend="numpy")
    curve = result.curves[result.curves.condition == "A"]
    assert list(curve.iteration) == [0, 1]
    assert list(curve.agent_steps) == [100.0, 200.0]
    assert curve.iqm.iloc[0] == pytest.approx(0.0)
    assert curve.iqm.iloc[1] == pytest.approx(0.55)


def test_horizon_and_incomplete_runs(sweep_root):
    # Cut A / Breakout / seed 0 to one iteration: it no longer counts at the
    # scheduled horizon of 2, but does at --iterations=1.
    path = os.path.join(sweep_root, "A", "Breakout", "seed_0", "metrics.csv")
    with open(path) as handle:
        lines = handle.readlines()
    with open(path, "w") as handle:
        handle.writelines(lines[:2])
    result = analysis.analyze(sweep_root, reps=300, backend="numpy")
    per_run = result.per_run.set_index(["condition", "game", "seed"])
    assert per_run.loc[("A", "Breakout", 0), "status"] == "incomplete (1/2)"
    assert aggregate(result, "A", "iqm").runs_per_game == 1
    early = analysis.analyze(sweep_root, iterations=1, reps=300, backend="numpy")
    # Iteration 0 of A: HNS 0 (Breakout s0), 0 (s1), 0 (Pong s0), 0.6 (s1).
    assert aggregate(early, "A", "mean").point == pytest.approx(0.15)


def test_run_curves_hold_every_written_iteration_of_every_run(sweep_root):
    result = analysis.analyze(sweep_root, reps=50, backend="numpy")
    curves = result.run_curves
    # 11 runs written, 2 iterations each; the missing run has no rows.
    assert len(curves) == 22
    assert not ((curves.condition == MISSING[0]) & (curves.game == MISSING[1])
                & (curves.seed == MISSING[2])).any()
    for (condition, game, seed), values in RETURNS.items():
        run = curves[(curves.condition == condition) & (curves.game == game)
                     & (curves.seed == seed)].sort_values("iteration")
        np.testing.assert_array_equal(run.raw_score, values)  # NaN stays NaN
        assert list(run.agent_steps) == [100, 200]
    # Up to the horizon only.
    early = analysis.analyze(sweep_root, iterations=1, reps=50, backend="numpy")
    assert set(early.run_curves.iteration) == {0}
    assert set(early.run_curves.status) == {"complete"}


def test_outputs_written(sweep_root, tmp_path):
    out_dir = str(tmp_path / "out")
    result = analysis.analyze(sweep_root, reps=200, backend="numpy")
    report = analysis.write_outputs(result, out_dir, label="Pipeline test")
    names = set(os.listdir(out_dir))
    assert {"report.md", "aggregates.csv", "per_run.csv", "learning_curves.csv",
            "probability_of_improvement.csv", "aggregate_intervals.png",
            "learning_curves.png", "probability_of_improvement.png",
            "run_curves.csv", "run_curves.png"} <= names
    with open(report) as handle:
        text = handle.read()
    assert "> **Pipeline test**" in text
    assert "aggregates = numpy" in text
    with open(os.path.join(out_dir, "aggregates.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8  # 2 conditions x 4 metrics


def test_bad_arguments(sweep_root):
    with pytest.raises(ValueError, match="baseline"):
        analysis.analyze(sweep_root, baseline="C", backend="numpy")
    with pytest.raises(ValueError, match="eval_episodes"):
        analysis.analyze(sweep_root, score="eval", backend="numpy")
    with pytest.raises(FileNotFoundError):
        analysis.analyze(sweep_root + "_nope")


def write_protocol_run(root, condition, protocol, train, evaluation):
    """A finished 2-iteration Breakout run whose config.json names `protocol`;
    `evaluation` holds the eval column ("" where no evaluation followed)."""
    run_dir = os.path.join(root, condition, "Breakout", "seed_0")
    os.makedirs(os.path.join(run_dir, "policy"))
    with open(os.path.join(run_dir, "policy", "saved_model.pb"), "wb") as handle:
        handle.write(b"fake")
    with open(os.path.join(run_dir, "config.json"), "w") as handle:
        json.dump({"game": "Breakout", "protocol": protocol, "agent": {}, "network": {},
                   "schedule": {"num_iterations": 2}}, handle)
    with open(os.path.join(run_dir, "metrics.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["iteration", "agent_steps", "train_episode_return",
                         "eval_episode_return"])
        for i, (value, score) in enumerate(zip(train, evaluation)):
            writer.writerow([i, (i + 1) * 100, value, score])


def test_der_runs_score_on_evaluation_and_rainbow_runs_on_training(tmp_path):
    # DER (Atari 100k) is reported on the mean of the evaluation games, the
    # Rainbow/DQN figures on training returns: --score=auto picks per run,
    # from config.json (the condition names do not say der_).
    root = str(tmp_path / "sweep")
    write_protocol_run(root, "atari100k_cond", "der", [raw(BREAKOUT, 0.1), raw(BREAKOUT, 0.2)],
                       ["", raw(BREAKOUT, 0.8)])  # --eval_schedule=final
    write_protocol_run(root, "rainbow_cond", "dopamine",
                       [raw(BREAKOUT, 0.3), raw(BREAKOUT, 0.4)],
                       [raw(BREAKOUT, 0.9), raw(BREAKOUT, 0.9)])
    result = analysis.analyze(root, reps=50, backend="numpy")
    per_run = result.per_run.set_index("condition")
    assert per_run.loc["atari100k_cond", "final_human_normalized_score"] == pytest.approx(0.8)
    assert per_run.loc["rainbow_cond", "final_human_normalized_score"] == pytest.approx(
        0.4)
    assert result.settings["score_columns"] == {
        "eval_episode_return": ["atari100k_cond"], "train_episode_return": ["rainbow_cond"]}
    forced = analysis.analyze(root, score="train", reps=50, backend="numpy")
    assert forced.per_run.set_index("condition").loc[
        "atari100k_cond", "final_human_normalized_score"] == pytest.approx(0.2)
    assert "`eval_episode_return` for atari100k_cond" in analysis.render_report(result)


def test_an_unfinished_run_that_evaluates_at_the_end_is_listed_not_refused(tmp_path):
    # --eval_schedule=final: until its last iteration a DER run's metrics.csv
    # has no evaluation column at all; the run is incomplete, not an error.
    root = str(tmp_path / "sweep")
    write_protocol_run(root, "der_done", "der", [raw(BREAKOUT, 0.1), raw(BREAKOUT, 0.2)],
                       ["", raw(BREAKOUT, 0.8)])
    run_dir = os.path.join(root, "der_going", "Breakout", "seed_0")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "config.json"), "w") as handle:
        json.dump({"game": "Breakout", "protocol": "der", "agent": {}, "network": {},
                   "schedule": {"num_iterations": 2, "eval_episodes": 100}}, handle)
    with open(os.path.join(run_dir, "metrics.csv"), "w") as handle:
        handle.write(f"iteration,agent_steps,train_episode_return\n0,100,{raw(BREAKOUT, 0.3)}\n")
    result = analysis.analyze(root, reps=50, backend="numpy")
    per_run = result.per_run.set_index("condition")
    assert per_run.loc["der_done", "final_human_normalized_score"] == pytest.approx(0.8)
    assert per_run.loc["der_going", "status"] == "incomplete (1/2)"
    assert np.isnan(per_run.loc["der_going", "final_human_normalized_score"])
    # It is still drawn, as not counted, with no score yet.
    going = result.run_curves[result.run_curves.condition == "der_going"]
    assert list(going.status) == ["incomplete (1/2)"] and going.raw_score.isna().all()
    # Without evaluation games in its config, the missing column is an error.
    with open(os.path.join(run_dir, "config.json"), "w") as handle:
        json.dump({"game": "Breakout", "protocol": "der", "agent": {}, "network": {},
                   "schedule": {"num_iterations": 2, "eval_episodes": 0}}, handle)
    with pytest.raises(ValueError, match="--eval_episodes=0; use --score=train"):
        analysis.analyze(root, reps=50, backend="numpy")


def test_corrupt_config_falls_back_on_the_condition_name(tmp_path):
    root = str(tmp_path / "sweep")
    write_protocol_run(root, "der_cond", "der", [raw(BREAKOUT, 0.1), raw(BREAKOUT, 0.2)],
                       ["", raw(BREAKOUT, 0.8)])
    with open(os.path.join(root, "der_cond", "Breakout", "seed_0", "config.json"),
              "w") as handle:
        handle.write("{broken")
    result = analysis.analyze(root, reps=50, backend="numpy")
    assert result.per_run.iloc[0].final_human_normalized_score == pytest.approx(0.8)


def test_requested_condition_without_runs_is_listed(sweep_root):
    result = analysis.analyze(sweep_root, conditions=["B", "C"], reps=50,
                              backend="numpy")
    assert result.conditions == ["B"] and result.conditions_without_runs == ["C"]
