"""experiments/sweep.py: plans, skipping, resuming, signals, estimates.

Runs are executed by fake processes that write what the train binary
writes (metrics.csv rows, policy/saved_model.pb), so no training happens.
"""

import csv
import json
import os
import signal
import sys

import numpy as np
import pytest

from experiments import sweep

CONDITIONS = ("rainbow_nature_flatten_x1", "dqn_nature_softmoe4")
SHORT = ("--num_iterations=2", "--steps_per_iteration=100", "--replay_capacity=1000",
         "--min_replay_history=50")


def plan(root, seeds=(0, 1), games=("Pong", "breakout"), extra=SHORT):
    flagfiles = [sweep.find_flagfile(name) for name in CONDITIONS]
    return sweep.plan_runs(str(root), flagfiles, list(games), list(seeds), extra)


def write_metrics(run_dir, iterations, steps_per_iteration=100, rate=50.0):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "metrics.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["iteration", "agent_steps", "train_episode_return",
                         "train_steps_per_second"])
        for i in range(iterations):
            writer.writerow([i, (i + 1) * steps_per_iteration, 1.0, rate * (i + 1)])


def finish(run_dir, iterations=2):
    write_metrics(run_dir, iterations)
    os.makedirs(os.path.join(run_dir, "policy"), exist_ok=True)
    with open(os.path.join(run_dir, "policy", "saved_model.pb"), "wb") as handle:
        handle.write(b"fake")


class FakeProcess:
    """Finishes its run (or fails) on its second poll."""

    def __init__(self, run, fail=False, on_first_poll=None):
        self.run, self.fail, self.on_first_poll = run, fail, on_first_poll
        self.polls, self.signals, self.code = 0, [], None

    def poll(self):
        self.polls += 1
        if self.polls == 1 and self.on_first_poll:
            self.on_first_poll(self)
        if self.code is None and self.polls >= 2 and not self.signals:
            if not self.fail:
                finish(self.run.run_dir, self.run.num_iterations)
            self.code = 1 if self.fail else 0
        return self.code

    def send_signal(self, signum):
        self.signals.append(signum)
        self.code = 128 + signum

    def wait(self):
        return self.code


class FakeLauncher:
    def __init__(self, fail=(), on_first_poll=None):
        self.launched, self.processes, self.fail = [], [], set(fail)
        self.on_first_poll = on_first_poll
        self.active, self.most_active = 0, 0

    def __call__(self, run, log_path):
        assert log_path == os.path.join(run.run_dir, sweep.RUN_LOG)
        process = FakeProcess(run, fail=run.run_dir in self.fail,
                              on_first_poll=self.on_first_poll)
        self.launched.append(run)
        self.processes.append(process)
        live = sum(p.code is None for p in self.processes)
        self.most_active = max(self.most_active, live)
        return process


def run_sweep(runs, launcher, workers=1, handle_signals=False):
    lines = []
    driver = sweep.Sweep(runs, workers=workers, launch=launcher, poll_seconds=0.001,
                         out=lines.append)
    outcomes = driver.run(handle_signals=handle_signals)
    return driver, outcomes, lines


def test_parse_seeds_and_games():
    assert sweep.parse_seeds("0-2,5") == [0, 1, 2, 5]
    assert sweep.parse_seeds([3, 1]) == [1, 3]
    with pytest.raises(ValueError, match="backwards"):
        sweep.parse_seeds("4-2")
    with pytest.raises(ValueError, match="Bad seed"):
        sweep.parse_seeds("a")
    games = sweep.parse_games("Pong,atari20")
    assert games[0] == "Pong" and len(games) == 20 and games.count("Pong") == 1


def test_plan_layout_and_order(tmp_path):
    runs = plan(tmp_path)
    assert len(runs) == 8
    assert [(r.seed, r.condition, r.game) for r in runs[:4]] == [
        (0, CONDITIONS[0], "Pong"), (0, CONDITIONS[0], "Breakout"),
        (0, CONDITIONS[1], "Pong"), (0, CONDITIONS[1], "Breakout")]
    first = runs[0]
    assert first.run_dir == os.path.join(str(tmp_path), CONDITIONS[0], "Pong", "seed_0")
    assert (first.num_iterations, first.steps_per_iteration, first.total_steps) == (
        2, 100, 200)
    assert all(r.status.state == "new" for r in runs)
    command = first.command(python="py")
    assert command[:2] == ["py", sweep.TRAIN_SCRIPT]
    assert command[2:6] == [f"--flagfile={first.flagfile}", "--game=Pong", "--seed=0",
                            f"--root_dir={first.run_dir}"]
    assert command[6:] == list(SHORT)


@pytest.mark.parametrize("flag", ["--game=Pong", "--seed=3", "--root_dir=x",
                                  "--flagfile=y", "positional"])
def test_pass_through_flags_may_not_set_run_flags(tmp_path, flag):
    with pytest.raises(ValueError, match="not allowed"):
        plan(tmp_path, extra=SHORT + (flag,))


def test_flagfile_that_sets_the_game_is_rejected(tmp_path):
    flagfile = tmp_path / "bad.flags"
    flagfile.write_text("--agent=dqn\n--game=Pong\n")
    with pytest.raises(ValueError, match="sets --game"):
        sweep.resolve_config(str(flagfile))


def test_invalid_pass_through_value_names_the_flagfile(tmp_path):
    with pytest.raises(ValueError, match="rainbow_nature_flatten_x1"):
        plan(tmp_path, extra=("--target_update_period=7",))


def test_runs_all_then_skips_finished_and_resumes_partial(tmp_path):
    runs = plan(tmp_path)
    launcher = FakeLauncher()
    _, outcomes, _ = run_sweep(runs, launcher)
    assert len(launcher.launched) == 8 and all(o.returncode == 0 for o in outcomes)
    assert all(r.status.state == "finished" for r in runs)

    # A fresh plan of the same sweep: nothing to do.
    again = plan(tmp_path)
    launcher = FakeLauncher()
    _, outcomes, lines = run_sweep(again, launcher)
    assert launcher.launched == [] and outcomes == []
    assert lines == ["Skipping 8 finished run(s)."]

    # One run interrupted after one iteration: it is the only one (re)started.
    interrupted = again[5].run_dir
    os.remove(os.path.join(interrupted, "policy", "saved_model.pb"))
    write_metrics(interrupted, 1)
    os.makedirs(os.path.join(interrupted, "checkpoints", "ckpt-00000150"))
    third = plan(tmp_path)
    assert third[5].status == sweep.RunStatus("partial", 1, 150)
    assert third[5].remaining_steps == 50
    launcher = FakeLauncher()
    _, _, lines = run_sweep(third, launcher)
    assert [r.run_dir for r in launcher.launched] == [interrupted]
    assert any("resuming" in line for line in lines)
    assert third[5].status.state == "finished"


def test_failed_run_is_reported_and_others_continue(tmp_path):
    runs = plan(tmp_path, seeds=(0,))
    launcher = FakeLauncher(fail={runs[1].run_dir})
    _, outcomes, lines = run_sweep(runs, launcher)
    assert len(outcomes) == 4
    failed = [o for o in outcomes if o.run.status.state != "finished"]
    assert [o.run.run_dir for o in failed] == [runs[1].run_dir]
    assert failed[0].returncode == 1
    assert any("stopped (exit 1" in line and sweep.RUN_LOG in line for line in lines)


def test_workers_run_in_parallel(tmp_path):
    runs = plan(tmp_path)
    launcher = FakeLauncher()
    run_sweep(runs, launcher, workers=3)
    assert launcher.most_active == 3
    assert all(r.status.state == "finished" for r in runs)


def test_signal_is_forwarded_and_no_run_starts_after_it(tmp_path):
    runs = plan(tmp_path)

    sent = []

    def deliver_sigterm(_process):
        # One SIGTERM to the sweep while both runs are active.
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    launcher = FakeLauncher(on_first_poll=deliver_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    driver, outcomes, lines = run_sweep(runs, launcher, workers=2, handle_signals=True)
    assert signal.getsignal(signal.SIGTERM) is before
    assert driver.stop_signal == signal.SIGTERM
    assert len(launcher.launched) == 2
    assert all(p.signals == [signal.SIGTERM] for p in launcher.processes)
    assert sorted(o.returncode for o in outcomes) == [143, 143]
    assert any(line.startswith("Signal 15") for line in lines)


def test_measured_rates_skip_the_first_iteration(tmp_path):
    root = tmp_path / "sweep"
    write_metrics(str(root / "cond_a" / "Pong" / "seed_0"), 3, rate=10.0)  # 10 20 30
    write_metrics(str(root / "cond_a" / "Pong" / "seed_1"), 2, rate=4.0)    # 4 8
    write_metrics(str(root / "cond_b" / "Pong" / "seed_0"), 1, rate=7.0)    # 7
    rates = sweep.measured_rates([str(root), str(tmp_path / "absent")])
    assert rates == {"cond_a": 20.0, "cond_b": 7.0}  # median of 20, 30, 8


def test_estimate(tmp_path):
    runs = plan(tmp_path)  # 8 runs of 200 agent steps
    finish(runs[0].run_dir)
    write_metrics(runs[1].run_dir, 1)  # partial: 100 of 200 steps done
    runs = plan(tmp_path)
    rates = {CONDITIONS[0]: 10.0}
    estimate = sweep.estimate_compute(runs, rates, workers=2, startup_seconds=60)
    # condition 0: 3 runs left, 100 + 200 + 200 steps at 10/s; condition 1:
    # 4 runs of 200 steps at the median measured rate (10/s); 60 s each.
    assert estimate.agent_steps == 100 + 200 + 200 + 4 * 200
    assert estimate.run_seconds == pytest.approx(1300 / 10 + 7 * 60)
    assert estimate.wall_seconds == pytest.approx(estimate.run_seconds / 2)
    assert estimate.sources == {CONDITIONS[0]: "measured", CONDITIONS[1]: "assumed"}
    unknown = sweep.estimate_compute(runs, {}, workers=1)
    assert unknown.unknown_runs == 7 and unknown.rates == {}


def test_dry_run_prints_plan_and_estimate(tmp_path, capsys):
    code = sweep.main([f"--sweep_root={tmp_path}", f"--conditions={','.join(CONDITIONS)}",
                       "--games=Pong", "--seeds=0,1", "--workers=1", "--dry_run",
                       "--steps_per_second=10", "--startup_seconds=60", "--"]
                      + list(SHORT))
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 conditions x 1 games x 2 seeds = 4 runs, 1 worker(s)" in printed
    assert "800 agent steps (3,200 frames)" in printed
    # 4 runs x (200 steps / 10 per s + 60 s) = 320 s.
    assert "5m20s of single-worker time" in printed
    assert ("python experiments/train.py --flagfile=experiments/configs/"
            "rainbow_nature_flatten_x1.flags --game=Pong --seed=0") in printed
    assert not os.listdir(tmp_path)  # a dry run writes nothing


def test_figure_drives_the_plan(tmp_path, capsys):
    code = sweep.main([f"--sweep_root={tmp_path}", "--figure=fig01_experts_and_scale",
                       "--games=Pong", "--seeds=0", "--workers=1", "--dry_run"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "6 conditions x 1 games x 1 seeds = 6 runs" in printed
    assert "Figure 1" in printed
    # 200 iterations x 250 000 steps per run.
    assert f"{6 * 200 * 250_000:,} agent steps" in printed


def test_default_workers_rule():
    small = sweep.Run("c", "f", "Pong", 0, "d", (), 2, 100, replay_bytes=10**7)
    big = sweep.Run("c", "f", "Pong", 0, "d", (), 2, 100, replay_bytes=7 * 10**9)
    gib = 1024**3
    assert sweep.default_workers([small], cores=2, memory_bytes=23 * gib) == 1
    assert sweep.default_workers([small], cores=16, memory_bytes=128 * gib) == 8
    # 128 GiB / (7 GB + 2 GiB) = 14 by memory, 8 by cores; 64 GiB: 7 by memory.
    assert sweep.default_workers([small, big], cores=16, memory_bytes=128 * gib) == 8
    assert sweep.default_workers([big], cores=16, memory_bytes=64 * gib) == 7
    assert sweep.default_workers([big], cores=1, memory_bytes=gib) == 1


def test_sweep_file_merges_and_copies_flagfiles(tmp_path):
    root = str(tmp_path)
    sweep.write_sweep_file(root, plan(tmp_path, seeds=(0,)), SHORT)
    sweep.write_sweep_file(root, plan(tmp_path, seeds=(1,)), SHORT)
    with open(os.path.join(root, sweep.SWEEP_FILE)) as handle:
        record = json.load(handle)
    assert len(record["runs"]) == 8
    entry = record["runs"][f"{CONDITIONS[1]}/Breakout/seed_1"]
    assert entry["flagfile"] == f"experiments/configs/{CONDITIONS[1]}.flags"
    assert (entry["num_iterations"], entry["extra_flags"]) == (2, list(SHORT))
    assert os.path.isfile(os.path.join(root, CONDITIONS[0], "condition.flags"))


def test_launch_subprocess_logs_and_detaches(tmp_path, monkeypatch):
    script = tmp_path / "fake_train.py"
    script.write_text("import os, sys\nprint('args', sys.argv[1:], os.getsid(0))\n")
    monkeypatch.setattr(sweep, "TRAIN_SCRIPT", str(script))
    run = plan(tmp_path, seeds=(0,), games=("Pong",))[0]
    log_path = os.path.join(run.run_dir, sweep.RUN_LOG)
    process = sweep.launch_subprocess(run, log_path)
    assert process.wait(timeout=60) == 0
    with open(log_path) as handle:
        text = handle.read()
    assert "sweep starts:" in text and f"'--seed=0'" in text
    child_session = int(text.strip().rsplit(" ", 1)[1])
    assert child_session != os.getsid(0)
    assert sys.executable in text


def test_probe_rate_reads_the_second_iteration(tmp_path, monkeypatch):
    script = tmp_path / "fake_train.py"
    script.write_text(
        "import os, sys\n"
        "args = dict(a[2:].split('=', 1) for a in sys.argv[1:])\n"
        "assert args['num_iterations'] == '2' and args['steps_per_iteration'] == '100'\n"
        "assert args['min_replay_history'] == '50' and args['replay_capacity'] == '400'\n"
        "with open(os.path.join(args['root_dir'], 'metrics.csv'), 'w') as f:\n"
        "    f.write('iteration,agent_steps,train_steps_per_second\\n0,100,3.0\\n1,200,42.0\\n')\n")
    monkeypatch.setattr(sweep, "TRAIN_SCRIPT", str(script))
    flagfile = sweep.find_flagfile(CONDITIONS[0])
    assert sweep.probe_rate(flagfile, "Pong", steps=100, log=lambda _: None) == 42.0
    script.write_text("import sys\nsys.exit(3)\n")
    messages = []
    assert np.isnan(sweep.probe_rate(flagfile, "Pong", steps=100, log=messages.append))
    assert any("probe failed (exit 3)" in m for m in messages)
