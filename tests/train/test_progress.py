"""Progress within an iteration: the progress lines, the TensorBoard scalars
every `summary_period` agent steps, and what stays as it was (the
per-iteration line, metrics.csv)."""

import collections
import csv
import dataclasses
import glob
import json
import math
import os
import re
import signal
import time

import pytest
import tensorflow as tf

from tf_softmoe.runs import run_directory
from tf_softmoe.train import config as config_lib
from tf_softmoe.train import experiment
from tf_softmoe.train import loop
from tf_softmoe.train import progress
from tests.train.test_experiment import catch_config, sigterm_at_call

# metrics.csv as it was before the within-iteration progress existed (a
# Catch run with evaluation): it must not change.
METRICS_COLUMNS = (
    "iteration,agent_steps,updates,train_episode_return,train_episode_length,"
    "train_episodes,train_loss,train_td_error_mean,train_td_error_var,"
    "train_steps_per_second,train_human_normalized_score,replay_size,q_mean,q_std,"
    "srank,parameter_norm,dormant_fraction_tau_0,dormant_fraction_tau_0.025,"
    "expert_gate_0,expert_gate_1,tokens_per_expert_0,tokens_per_expert_1,"
    "router_grad_norm,router_weight_norm,eval_episode_return,eval_episode_length,"
    "eval_episodes,eval_human_normalized_score,wall_time").split(",")
ITERATION_LINE = re.compile(
    r"\[catch\] iteration (\d)/2 \| (\d+) agent steps \| \d+ steps/s \| "
    r"return -?\d+\.\d\d \(\d+ episodes\) \| loss [-+.e\d]+ \| "
    r"eval return -?\d+\.\d\d \(2 games\) \| ETA \d+h\d\dm\d\ds")
PROGRESS_LINE = re.compile(
    r"\[catch\] iteration (\d)/2 progress: (\d+)/60 steps \(\d+%\) \| (\d+) steps/s \| "
    r"(\d+) updates \| (\d+) episodes, (last return -?\d+\.\d\d|no return yet) \| "
    r"ETA iteration (\S+), run (\S+)")
# The line starting the evaluation after an iteration (2 games in catch_config).
EVALUATION_START = re.compile(r"\[catch\] evaluation after iteration (\d)/2: 2 games")


def with_schedule(config, **changes):
    return config.replace(schedule=dataclasses.replace(config.schedule, **changes))


def events(root):
    """{tag: [(step, value), ...]} of a run's TensorBoard events."""
    out = collections.defaultdict(list)
    for path in sorted(glob.glob(os.path.join(root, "tensorboard", "events.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    number = value.simple_value
                else:
                    number = float(tf.make_ndarray(value.tensor)) if (
                        value.metadata.plugin_data.plugin_name == "scalars") else None
                out[value.tag].append((event.step, number))
    return out


def read_metrics(root):
    with open(os.path.join(root, "metrics.csv")) as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def progress_run(tmp_path_factory):
    """Two Catch iterations of 60 steps, a line every 20 agent steps (none
    by time: deterministic) and TensorBoard points every 10."""
    root = str(tmp_path_factory.mktemp("progress") / "run")
    lines = []
    config = with_schedule(catch_config(eval_episodes=2), progress_seconds=0,
                           progress_steps=20, summary_period=10)
    run = experiment.Experiment(config, root, handle_signals=False,
                                export_on_exit=False)
    run.monitor.report = lambda line: lines.append(line)
    write_progress = run.monitor.record
    records = []

    def record(values):
        records.append(values)
        write_progress(values)

    run.monitor.record = record
    run.run()
    run_progress_records[root] = records
    return root, lines


# What the progress_run's monitor recorded, by run directory.
run_progress_records = {}


def test_progress_lines_have_every_field(progress_run):
    _, all_lines = progress_run
    # Each iteration's evaluation is announced after its last progress line;
    # its games (5 steps each) take less than progress_seconds, so no more.
    assert [EVALUATION_START.fullmatch(line)[1] if EVALUATION_START.fullmatch(line)
            else "" for line in all_lines] == ["", "", "", "1", "", "", "", "2"]
    lines = [line for line in all_lines if not EVALUATION_START.fullmatch(line)]
    matches = [PROGRESS_LINE.fullmatch(line) for line in lines]
    assert all(matches), lines
    assert [(int(m[1]), int(m[2])) for m in matches] == [
        (1, 20), (1, 40), (1, 60), (2, 20), (2, 40), (2, 60)]
    # Catch games last 5 steps (rows 6); updates every 2 steps from step 40.
    assert [int(m[5]) for m in matches] == [4, 8, 12, 4, 8, 12]
    assert [int(m[4]) for m in matches] == [0, 1, 11, 21, 31, 41]
    # The last return is that of the newest episode ended by the line's step.
    root, _ = progress_run
    returns = events(root)["episodes/return"]
    for m in matches:
        step = (int(m[1]) - 1) * 60 + int(m[2])
        newest = [value for end, value in returns if end <= step][-1]
        assert m[6] == f"last return {newest:.2f}"
    assert all(m[7] != "?" and m[8] != "?" for m in matches)


def test_each_progress_line_rewrites_progress_json(progress_run):
    root, lines = progress_run
    records = run_progress_records[root]
    assert len(records) == len(lines) == 8
    for line, values in zip(lines, records):
        if EVALUATION_START.fullmatch(line):
            # The training numbers stay; the phase and the games are added.
            assert values["phase"] == "evaluation"
            assert (values["eval_games"], values["eval_episodes"]) == (0, 2)
            assert values["agent_steps"] == (values["iteration"] + 1) * 60
            assert int(EVALUATION_START.fullmatch(line)[1]) == values["iteration"] + 1
            continue
        assert values["phase"] == "training"
        m = PROGRESS_LINE.fullmatch(line)
        assert values["iteration"] + 1 == int(m[1])
        assert values["iteration_steps"] == int(m[2])
        assert values["agent_steps"] == values["iteration"] * 60 + int(m[2])
        assert (values["updates"], values["episodes"]) == (int(m[4]), int(m[5]))
        assert (values["num_iterations"], values["steps_per_iteration"],
                values["total_steps"]) == (2, 60, 120)
        assert values["steps_per_second"] > 0
    with open(os.path.join(root, "progress.json")) as f:
        written = json.load(f)
    assert written == records[-1]
    assert written["agent_steps"] == 120
    assert abs(written["updated"] - time.time()) < 600
    assert run_directory.RunDirectory(root).read_progress() == written


def test_printed_lines_and_metrics_stay_as_they_were(tmp_path, capsys):
    root = str(tmp_path / "run")
    config = with_schedule(catch_config(eval_episodes=2), progress_seconds=0,
                           progress_steps=30)
    experiment.Experiment(config, root, handle_signals=False,
                          export_on_exit=False).run()
    printed = capsys.readouterr().out.splitlines()
    iteration_lines = [line for line in printed if " progress: " not in line
                       and not EVALUATION_START.fullmatch(line)]
    assert [ITERATION_LINE.fullmatch(line)[1] for line in iteration_lines] == ["1", "2"]
    assert [PROGRESS_LINE.fullmatch(line)[2] for line in printed
            if " progress: " in line] == ["30", "60", "30", "60"]
    fields, rows = read_metrics(root)
    assert fields == METRICS_COLUMNS
    assert [int(r["agent_steps"]) for r in rows] == [60, 120]


def test_tensorboard_gets_the_training_scalars_at_the_cadence(progress_run):
    root, _ = progress_run
    tags = events(root)
    # The first update is at agent step 40 (min_replay_history).
    for tag in ("updates/loss", "updates/td_error_mean", "updates/td_error_var"):
        assert [step for step, _ in tags[tag]] == list(range(40, 121, 10)), tag
        assert all(math.isfinite(value) for _, value in tags[tag])
    assert [step for step, _ in tags["perf/recent_agent_steps_per_second"]] == list(
        range(10, 121, 10))
    # One point per finished episode, at the step it ended; their mean is the
    # iteration's train_episode_return.
    _, rows = read_metrics(root)
    returns = tags["episodes/return"]
    assert [step for step, _ in returns] == list(range(5, 121, 5))
    for row, low, high in ((rows[0], 0, 60), (rows[1], 60, 120)):
        values = [value for step, value in returns if low < step <= high]
        assert len(values) == int(row["train_episodes"])
        assert sum(values) / len(values) == pytest.approx(
            float(row["train_episode_return"]))
    # The diagnostics (Q statistics, ...) every diagnostics_period=5 updates,
    # inside the iteration, not only at its end.
    q_steps = [step for step, _ in tags["train/q_mean"]]
    assert q_steps[0] == 48 and len([s for s in q_steps if s < 60]) >= 2
    assert len(tags["diagnostics/srank"]) == len(q_steps)
    # The per-iteration scalars are unchanged: one point per iteration.
    assert [step for step, _ in tags["train/loss"]] == [60, 120]
    assert [step for step, _ in tags["perf/agent_steps_per_second"]] == [60, 120]


def test_summary_period_zero_writes_only_per_iteration(tmp_path):
    root = str(tmp_path / "run")
    config = with_schedule(catch_config(num_iterations=1), progress_seconds=0,
                           summary_period=0, diagnostics_period=0)
    experiment.Experiment(config, root, handle_signals=False,
                          export_on_exit=False).run()
    tags = events(root)
    assert not [tag for tag in tags if tag.startswith(("updates/", "episodes/"))]
    assert [step for step, _ in tags["train/q_mean"]] == [60]


class FakeClock:
    def __init__(self, step_seconds):
        self.now = 0.0
        self.step_seconds = step_seconds

    def __call__(self):
        return self.now


def drive(monitor, clock, stats, first_step, num_steps):
    """What `Trainer.run` does per agent step, with `clock` advancing a
    fixed time per step."""
    for step in range(first_step + 1, first_step + num_steps + 1):
        clock.now += clock.step_seconds
        stats.agent_steps += 1
        if step >= monitor.next_step or monitor.clock() >= monitor.next_time:
            monitor.update(step, stats)


def test_lines_by_time_and_the_eta_of_a_resumed_iteration():
    # The second of three 1000-step iterations, resumed with 400 steps done;
    # 8 agent steps per (fake) second, a line every 30 s.
    clock = FakeClock(0.125)
    lines = []
    monitor = progress.IterationMonitor(
        "Pong", num_iterations=3, steps_per_iteration=1000, summary_period=0,
        progress_seconds=30, writer=None, updates=lambda: 7, report=lines.append,
        clock=clock)
    stats = loop.PhaseStats(agent_steps=400, episode_returns=[-21.0, -20.0])
    monitor.begin(1, 1400, stats)
    drive(monitor, clock, stats, 1400, 600)
    assert lines[0] == (
        "[Pong] iteration 2/3 progress: 640/1000 steps (64%) | 8 steps/s | 7 updates | "
        "2 episodes, last return -20.00 | ETA iteration 0h00m45s, run 0h02m50s")
    assert [line.split(" progress: ")[1].split(" ")[0] for line in lines] == [
        "640/1000", "880/1000"]


def test_the_steps_per_second_are_of_the_recent_window():
    clock = FakeClock(0.5)
    lines = []
    monitor = progress.IterationMonitor(
        "catch", 1, 100, summary_period=0, progress_seconds=0, progress_steps=10,
        report=lines.append, clock=clock)
    stats = loop.PhaseStats()
    monitor.begin(0, 0, stats)
    drive(monitor, clock, stats, 0, 10)  # 2 steps/s
    clock.step_seconds = 0.125
    drive(monitor, clock, stats, 10, 10)  # 8 steps/s
    assert [re.search(r"(\d+) steps/s", line)[1] for line in lines] == ["2", "8"]
    assert "0 episodes, no return yet" in lines[0]


def test_evaluation_lines_by_time_and_its_progress_record():
    # 100 games after iteration 10 of 10; a game every 20 s of 500 steps; a
    # line every 30 s.
    clock = FakeClock(0)
    lines, records = [], []
    monitor = progress.IterationMonitor(
        "RoadRunner", num_iterations=10, steps_per_iteration=10_000, summary_period=0,
        progress_seconds=30, report=lines.append, record=records.append, clock=clock)
    stats = loop.PhaseStats(agent_steps=9_970)
    monitor.begin(9, 99_970, stats)
    clock.now = 30.0
    stats.agent_steps = 10_000
    monitor.update(100_000, stats)  # the last training line: 1 step/s
    clock.now = 100.0
    monitor.begin_evaluation(9, 100_000, 100)
    returns = []
    for game in range(1, 5):
        clock.now = 100.0 + 20 * game
        returns.append(1000.0 * game)
        monitor.evaluation_progress(returns, [500] * game, 500 * game)
    assert lines[1:] == [
        "[RoadRunner] evaluation after iteration 10/10: 100 games",
        # 2 games in 40 s: 98 more take 1960 s.
        "[RoadRunner] evaluation after iteration 10/10: 2/100 games | "
        "mean return 1500.00 | 25 steps/s | ETA 0h32m40s",
        "[RoadRunner] evaluation after iteration 10/10: 4/100 games | "
        "mean return 2500.00 | 25 steps/s | ETA 0h32m00s"]
    assert [(r["phase"], r.get("eval_games"), r.get("eval_steps")) for r in records] == [
        ("training", None, None), ("evaluation", 0, 0), ("evaluation", 2, 1000),
        ("evaluation", 4, 2000)]
    # The training rate stays for the sweep's ETA.
    assert {r["steps_per_second"] for r in records} == {1.0}
    assert {(r["iteration"], r["agent_steps"]) for r in records} == {(9, 100_000)}
    assert records[-1]["eval_episodes"] == 100


def test_evaluation_in_several_environments_reports_steps_not_an_eta():
    # 100 games in 100 environments: no game ends for a long time, so the
    # lines come by time from the rounds of steps, and give no ETA.
    clock = FakeClock(0)
    lines = []
    monitor = progress.IterationMonitor(
        "RoadRunner", num_iterations=10, steps_per_iteration=10_000, summary_period=0,
        progress_seconds=30, report=lines.append, clock=clock)
    monitor.begin_evaluation(9, 100_000, 100, envs=100)
    for second in range(1, 62):
        clock.now = float(second)
        monitor.evaluation_progress([], [], 600 * second)
    clock.now = 95.0
    monitor.evaluation_progress([2000.0, 4000.0], [900, 1000], 57_000)
    assert lines == [
        "[RoadRunner] evaluation after iteration 10/10: 100 games in 100 environments "
        "at once",
        "[RoadRunner] evaluation after iteration 10/10: 0/100 games | 18000 agent steps | "
        "no game ended yet | 600 steps/s",
        "[RoadRunner] evaluation after iteration 10/10: 0/100 games | 36000 agent steps | "
        "no game ended yet | 600 steps/s",
        "[RoadRunner] evaluation after iteration 10/10: 2/100 games | 57000 agent steps | "
        "mean return 3000.00 | 600 steps/s"]


def test_a_run_resumed_into_its_evaluation_records_without_a_training_line():
    records = []
    monitor = progress.IterationMonitor("Pong", 2, 100, summary_period=0,
                                        progress_seconds=0, report=lambda _: None,
                                        record=records.append, updates=lambda: 151)
    monitor.begin_evaluation(1, 200, 10)
    monitor.evaluation_progress([1.0], [20], 20)  # no line: progress_seconds=0
    assert records == [{
        "phase": "evaluation", "iteration": 1, "num_iterations": 2,
        "iteration_steps": 100, "steps_per_iteration": 100, "agent_steps": 200,
        "total_steps": 200, "steps_per_second": None, "updates": 151, "episodes": None,
        "eval_games": 0, "eval_episodes": 10, "eval_steps": 0,
        "updated": records[0]["updated"]}]


def test_no_progress_and_no_summaries_means_no_calls():
    monitor = progress.IterationMonitor("catch", 1, 100, summary_period=0,
                                        progress_seconds=0, progress_steps=0)
    monitor.begin(0, 0, loop.PhaseStats())
    assert monitor.next_step == math.inf and monitor.next_time == math.inf


def test_resume_mid_iteration_keeps_the_progress_numbers(tmp_path):
    # SIGTERM after 24 steps of iteration 0; the resumed run's lines count
    # the iteration's steps from 24, and the ETA uses the steps left in it.
    root = str(tmp_path / "run")
    config = with_schedule(catch_config(num_iterations=2), progress_seconds=0,
                           progress_steps=20)
    run = experiment.Experiment(config, root, export_on_exit=False)
    run.monitor.report = lambda line: None
    sigterm_at_call(run, 25)
    run.run()
    assert run.stopped_by_signal == signal.SIGTERM

    resumed = experiment.Experiment(config, root, export_on_exit=False)
    lines = []
    resumed.monitor.report = lines.append
    # 8 agent steps per second of a clock that follows the agent step.
    resumed.monitor.clock = lambda: resumed.trainer.agent_step * 0.125
    resumed.run()
    first = PROGRESS_LINE.fullmatch(lines[0])
    assert (first[1], first[2], first[3]) == ("1", "40", "8")
    # 20 steps left in iteration 0 and 60 in iteration 1 at 8 steps/s.
    assert (first[7], first[8]) == ("0h00m02s", "0h00m10s")
    assert [PROGRESS_LINE.fullmatch(line)[2] for line in lines] == ["40", "60", "20",
                                                                     "40", "60"]
    _, rows = read_metrics(root)
    assert [int(r["agent_steps"]) for r in rows] == [60, 120]


@pytest.mark.parametrize("changes, message", [
    ({"progress_seconds": float("nan")}, "progress_seconds must be a finite number"),
    ({"progress_seconds": -1.0}, "progress_seconds must be a finite number"),
    ({"progress_seconds": "30"}, "progress_seconds must be a finite number"),
    ({"progress_steps": -5}, "progress_steps must be an integer >= 0"),
    ({"summary_period": 2.5}, "summary_period must be an integer"),
])
def test_bad_progress_settings_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        config_lib.ScheduleConfig(**changes)


def test_progress_settings_may_change_on_resume():
    stored = catch_config()
    now = with_schedule(stored, progress_seconds=5, progress_steps=100,
                        summary_period=1000)
    assert not config_lib.config_differences(stored, now)
    # A config.json written before these fields existed reads back with the
    # defaults (the reference's summary cadence, a line every 30 s).
    values = stored.to_dict()
    for name in ("progress_seconds", "progress_steps", "summary_period"):
        del values["schedule"][name]
    old = config_lib.ExperimentConfig.from_dict(values)
    assert (old.schedule.summary_period, old.schedule.progress_seconds,
            old.schedule.progress_steps) == (500, 30.0, 0)
