"""experiments/analyze.py on a fake sweep directory with hand-computed values.

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

from experiments import analyze

BREAKOUT = (1.7, 30.5)
PONG = (-20.7, 14.6)


def raw(reference, hns):
    random, human = reference
    return random + hns * (human - random)


# (condition, game, seed) -> raw training returns of iterations 0 and 1.
RETURNS = {
    ("A", "Breakout", 0): [raw(BREAKOUT, 0.0), raw(BREAKOUT, 1.0)],
    ("A", "Breakout", 1): [raw(BREAKOUT, 0.0), raw(BREAKOUT, 0.5)],
    ("A", "Pong", 0): [raw(PONG, 0.0), raw(PONG, 0.2)],
    ("A", "Pong", 1): [raw(PONG, 0.6), float("nan")],
    ("A", "AirRaid", 0): [500.0, 700.0],
    ("A", "AirRaid", 1): [600.0, 900.0],
    ("B", "Breakout", 0): [raw(BREAKOUT, 0.0), raw(BREAKOUT, 0.1)],
    ("B", "Breakout", 1): [raw(BREAKOUT, 0.0), raw(BREAKOUT, 0.3)],
    ("B", "Pong", 0): [raw(PONG, 0.1), raw(PONG, 0.4)],
    ("B", "AirRaid", 0): [400.0, 450.0],
    ("B", "AirRaid", 1): [500.0, 550.0],
}
MISSING = ("B", "Pong", 1)


def write_run(root, cell, returns, steps_per_iteration=100):
    run_dir = os.path.join(root, cell[0], cell[1], f"seed_{cell[2]}")
    os.makedirs(os.path.join(run_dir, "policy"))
    with open(os.path.join(run_dir, "policy", "saved_model.pb"), "wb") as handle:
        handle.write(b"fake")
    with open(os.path.join(run_dir, "metrics.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["iteration", "agent_steps", "train_episode_return",
                         "train_steps_per_second"])
        for i, value in enumerate(returns):
            writer.writerow([i, (i + 1) * steps_per_iteration,
                             "nan" if np.isnan(value) else value, 50.0])


@pytest.fixture(name="sweep_root")
def fixture_sweep_root(tmp_path):
    root = str(tmp_path / "sweep")
    plan = {"runs": {}}
    for cell in list(RETURNS) + [MISSING]:
        key = f"{cell[0]}/{cell[1]}/seed_{cell[2]}"
        plan["runs"][key] = {"condition": cell[0], "game": cell[1], "seed": cell[2],
                             "num_iterations": 2, "steps_per_iteration": 100}
        if cell in RETURNS:
            write_run(root, cell, RETURNS[cell])
    with open(os.path.join(root, "sweep.json"), "w") as handle:
        json.dump(plan, handle)
    return root


def aggregate(result, condition, metric):
    rows = result.aggregates
    return rows[(rows.condition == condition) & (rows.metric == metric)].iloc[0]


def test_aggregates_match_hand_computed_values(sweep_root):
    result = analyze.analyze(sweep_root, reps=300, backend="numpy")
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
    result = analyze.analyze(sweep_root, baseline="B", reps=300, backend="numpy")
    poi = result.improvement.iloc[0]
    assert (poi.condition, poi.baseline) == ("A", "B")
    assert poi.probability == pytest.approx(0.75)
    assert poi.lower <= 0.75 <= poi.upper


def test_missing_run_and_raw_only_game_are_reported(sweep_root):
    result = analyze.analyze(sweep_root, reps=300, backend="numpy")
    per_run = result.per_run.set_index(["condition", "game", "seed"])
    assert per_run.loc[MISSING, "status"] == "missing"
    assert (per_run.status == "complete").sum() == len(RETURNS)
    # Forward fill: the last iteration had no episode, iteration 0's score counts.
    assert per_run.loc[("A", "Pong", 1), "final_raw_score"] == pytest.approx(
        raw(PONG, 0.6))
    assert np.isnan(per_run.loc[("A", "AirRaid", 0), "final_human_normalized_score"])
    assert per_run.loc[("A", "AirRaid", 0), "final_raw_score"] == 700.0
    text = analyze.render_report(result)
    assert "B / Pong / seed 1: missing" in text
    assert "AirRaid: no human/random reference scores" in text
    assert "| B | 2/2 | 2/2 | 1/2 |" in text  # AirRaid, Breakout, Pong columns


def test_started_run_without_metrics_is_incomplete_not_missing(sweep_root):
    run_dir = os.path.join(sweep_root, *MISSING[:2], f"seed_{MISSING[2]}")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "config.json"), "w") as handle:
        handle.write("{}")
    result = analyze.analyze(sweep_root, reps=200, backend="numpy")
    per_run = result.per_run.set_index(["condition", "game", "seed"])
    assert per_run.loc[MISSING, "status"] == "incomplete (0/2)"


def test_learning_curve_values(sweep_root):
    result = analyze.analyze(sweep_root, reps=300, backend="numpy")
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
    result = analyze.analyze(sweep_root, reps=300, backend="numpy")
    per_run = result.per_run.set_index(["condition", "game", "seed"])
    assert per_run.loc[("A", "Breakout", 0), "status"] == "incomplete (1/2)"
    assert aggregate(result, "A", "iqm").runs_per_game == 1
    early = analyze.analyze(sweep_root, iterations=1, reps=300, backend="numpy")
    # Iteration 0 of A: HNS 0 (Breakout s0), 0 (s1), 0 (Pong s0), 0.6 (s1).
    assert aggregate(early, "A", "mean").point == pytest.approx(0.15)


def test_outputs_written(sweep_root, tmp_path):
    out_dir = str(tmp_path / "out")
    result = analyze.analyze(sweep_root, reps=200, backend="numpy")
    report = analyze.write_outputs(result, out_dir, label="Pipeline test")
    names = set(os.listdir(out_dir))
    assert {"report.md", "aggregates.csv", "per_run.csv", "learning_curves.csv",
            "probability_of_improvement.csv", "aggregate_intervals.png",
            "learning_curves.png", "probability_of_improvement.png"} <= names
    with open(report) as handle:
        text = handle.read()
    assert "> **Pipeline test**" in text
    assert "aggregates = numpy" in text
    with open(os.path.join(out_dir, "aggregates.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8  # 2 conditions x 4 metrics


def test_command_line(sweep_root, tmp_path, capsys):
    out_dir = str(tmp_path / "cli")
    assert analyze.main([f"--sweep_root={sweep_root}", f"--out_dir={out_dir}",
                         "--conditions=B,A", "--reps=200", "--backend=numpy"]) == 0
    printed = capsys.readouterr().out
    assert "not counted: B / Pong / seed 1: missing" in printed
    assert os.path.isfile(os.path.join(out_dir, "report.md"))


def test_bad_arguments(sweep_root):
    with pytest.raises(ValueError, match="baseline"):
        analyze.analyze(sweep_root, baseline="C", backend="numpy")
    with pytest.raises(ValueError, match="eval_episodes"):
        analyze.analyze(sweep_root, score="eval", backend="numpy")
    with pytest.raises(FileNotFoundError):
        analyze.analyze(sweep_root + "_nope")


def write_protocol_run(root, condition, protocol, train, evaluation):
    """A finished 2-iteration Breakout run whose config.json names `protocol`;
    `evaluation` holds the eval column ("" where no evaluation followed)."""
    run_dir = os.path.join(root, condition, "Breakout", "seed_0")
    os.makedirs(os.path.join(run_dir, "policy"))
    with open(os.path.join(run_dir, "policy", "saved_model.pb"), "wb") as handle:
        handle.write(b"fake")
    with open(os.path.join(run_dir, "config.json"), "w") as handle:
        json.dump({"protocol": protocol, "schedule": {"num_iterations": 2}}, handle)
    with open(os.path.join(run_dir, "metrics.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["iteration", "agent_steps", "train_episode_return",
                         "eval_episode_return"])
        for i, (value, score) in enumerate(zip(train, evaluation)):
            writer.writerow([i, (i + 1) * 100, value, score])


def test_der_runs_score_on_evaluation_and_rainbow_runs_on_training(tmp_path):
    # DER (Atari 100k) is reported on the mean of the evaluation games, the
    # Rainbow/DQN figures on training returns: --score=auto picks per run.
    root = str(tmp_path / "sweep")
    write_protocol_run(root, "der_cond", "der", [raw(BREAKOUT, 0.1), raw(BREAKOUT, 0.2)],
                       ["", raw(BREAKOUT, 0.8)])  # --eval_schedule=final
    write_protocol_run(root, "rainbow_cond", "dopamine",
                       [raw(BREAKOUT, 0.3), raw(BREAKOUT, 0.4)],
                       [raw(BREAKOUT, 0.9), raw(BREAKOUT, 0.9)])
    result = analyze.analyze(root, reps=50, backend="numpy")
    per_run = result.per_run.set_index("condition")
    assert per_run.loc["der_cond", "final_human_normalized_score"] == pytest.approx(0.8)
    assert per_run.loc["rainbow_cond", "final_human_normalized_score"] == pytest.approx(
        0.4)
    assert result.settings["score_columns"] == {
        "eval_episode_return": ["der_cond"], "train_episode_return": ["rainbow_cond"]}
    forced = analyze.analyze(root, score="train", reps=50, backend="numpy")
    assert forced.per_run.set_index("condition").loc[
        "der_cond", "final_human_normalized_score"] == pytest.approx(0.2)
    assert "`eval_episode_return` for der_cond" in analyze.render_report(result)
