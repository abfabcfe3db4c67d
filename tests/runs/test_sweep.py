"""tf_softmoe.runs.sweep: plans, skipping, resuming, signals, estimates,
with the local backend running fake processes."""

import json
import os
import signal
import types

import pytest

from tests.runs.sweep_fakes import (CONDITIONS, SHORT, FakeLauncher, finish, plan,
                                    write_metrics)
from tf_softmoe.runs import conditions
from tf_softmoe.runs import run_directory
from tf_softmoe.runs import sweep
from tf_softmoe.runs.backends import local


def run_sweep(units, launcher, workers=1, handle_signals=False):
    lines = []
    backend = local.LocalBackend(workers=workers, launch=launcher)
    scheduler = sweep.Scheduler(units, backend, poll_seconds=0.001, out=lines.append)
    with backend:
        outcomes = scheduler.run(handle_signals=handle_signals)
    return scheduler, outcomes, lines


def test_plan_layout_order_and_command(tmp_path):
    units = plan(tmp_path)
    assert len(units) == 8
    assert [(u.seed, u.condition, u.game) for u in units[:4]] == [
        (0, CONDITIONS[0], "Pong"), (0, CONDITIONS[0], "Breakout"),
        (0, CONDITIONS[1], "Pong"), (0, CONDITIONS[1], "Breakout")]
    first = units[0]
    assert first.run_dir == os.path.join(str(tmp_path), CONDITIONS[0], "Pong", "seed_0")
    assert (first.num_iterations, first.steps_per_iteration, first.total_steps) == (
        2, 100, 200)
    assert all(u.status.state == "new" for u in units)
    # Paths inside the repository are relative to it; the sweep root here is not.
    command = first.command(python="py")
    assert command[:2] == ["py", os.path.join("experiments", "train.py")]
    assert command[2:6] == [
        f"--flagfile={os.path.join('experiments', 'configs', CONDITIONS[0])}.flags",
        "--game=Pong", "--seed=0", f"--root_dir={first.run_dir}"]
    assert command[6:] == list(SHORT)


@pytest.mark.parametrize("flag", ["--game=Pong", "--seed=3", "--root_dir=x",
                                  "--flagfile=y", "positional"])
def test_pass_through_flags_may_not_set_run_flags(tmp_path, flag):
    with pytest.raises(ValueError, match="not allowed"):
        plan(tmp_path, extra=SHORT + (flag,))


def test_invalid_pass_through_value_names_the_flagfile(tmp_path):
    with pytest.raises(ValueError, match="rainbow_nature_flatten_x1"):
        plan(tmp_path, extra=("--target_update_period=7",))


def test_runs_all_then_skips_finished_and_resumes_partial(tmp_path):
    units = plan(tmp_path)
    launcher = FakeLauncher()
    _, outcomes, _ = run_sweep(units, launcher)
    assert len(launcher.launched) == 8 and all(o.returncode == 0 for o in outcomes)
    assert all(u.status.state == "finished" for u in units)

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
    assert third[5].status == run_directory.RunStatus("partial", 1, 150)
    assert third[5].remaining_steps == 50
    launcher = FakeLauncher()
    _, _, lines = run_sweep(third, launcher)
    assert [u.run_dir for u in launcher.launched] == [interrupted]
    assert any("resuming" in line for line in lines)
    assert third[5].status.state == "finished"


def test_failed_run_is_reported_with_its_log_and_others_continue(tmp_path):
    units = plan(tmp_path, seeds=(0,))
    launcher = FakeLauncher(fail={units[1].run_dir})
    _, outcomes, lines = run_sweep(units, launcher)
    assert len(outcomes) == 4
    failed = [o for o in outcomes if not o.finished]
    assert [o.unit.run_dir for o in failed] == [units[1].run_dir]
    assert failed[0].returncode == 1
    log = os.path.join(units[1].run_dir, "train.log")
    assert any("stopped (exit 1" in line and log in line for line in lines)


def test_workers_run_in_parallel(tmp_path):
    units = plan(tmp_path)
    launcher = FakeLauncher()
    run_sweep(units, launcher, workers=3)
    assert launcher.most_active == 3
    assert all(u.status.state == "finished" for u in units)


def test_signal_is_forwarded_and_no_run_starts_after_it(tmp_path):
    units = plan(tmp_path)
    sent = []

    def deliver_sigterm(_process):
        # One SIGTERM to the sweep while both runs are active.
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    launcher = FakeLauncher(on_first_poll=deliver_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    scheduler, outcomes, lines = run_sweep(units, launcher, workers=2,
                                           handle_signals=True)
    assert signal.getsignal(signal.SIGTERM) is before
    assert scheduler.stop_signal == signal.SIGTERM
    assert len(launcher.launched) == 2
    assert all(p.signals == [signal.SIGTERM] for p in launcher.processes)
    assert sorted(o.returncode for o in outcomes) == [143, 143]
    assert any(line.startswith("Signal 15") for line in lines)


class RecordingBackend:
    """A backend without a limit on runs in flight (as a cluster backend
    that queues by resources): every unit is submitted at once."""

    max_in_flight = None

    def __init__(self):
        self.submitted, self.in_flight_at_first_poll = [], None

    def submit(self, unit):
        from tf_softmoe.runs.backends import base  # pylint: disable=import-outside-toplevel
        self.submitted.append(unit)
        return base.RunHandle(unit)

    def poll(self, handles, timeout):
        if self.in_flight_at_first_poll is None:
            self.in_flight_at_first_poll = len(handles)
        finish(handles[0].unit.run_dir)
        return [(handles[0], 0)]

    def cancel(self, handle, signum=signal.SIGTERM):
        raise AssertionError("nothing is cancelled")


def test_unlimited_backend_gets_every_unit_at_once(tmp_path):
    units = plan(tmp_path, seeds=(0,))
    backend = RecordingBackend()
    outcomes = sweep.Scheduler(units, backend, out=lambda _: None).run(
        handle_signals=False)
    assert backend.in_flight_at_first_poll == 4
    assert [o.unit for o in outcomes] == units and all(o.finished for o in outcomes)


def test_measured_rates_skip_the_first_iteration(tmp_path):
    root = tmp_path / "sweep"
    write_metrics(str(root / "cond_a" / "Pong" / "seed_0"), 3, rate=10.0)  # 10 20 30
    write_metrics(str(root / "cond_a" / "Pong" / "seed_1"), 2, rate=4.0)    # 4 8
    write_metrics(str(root / "cond_b" / "Pong" / "seed_0"), 1, rate=7.0)    # 7
    rates = sweep.measured_rates([str(root), str(tmp_path / "absent")])
    assert rates == {"cond_a": 20.0, "cond_b": 7.0}  # median of 20, 30, 8


def test_estimate(tmp_path):
    units = plan(tmp_path)  # 8 runs of 200 agent steps
    finish(units[0].run_dir)
    write_metrics(units[1].run_dir, 1)  # partial: 100 of 200 steps done
    units = plan(tmp_path)
    rates = {CONDITIONS[0]: 10.0}
    estimate = sweep.estimate_compute(units, rates, workers=2, startup_seconds=60)
    # condition 0: 3 runs left, 100 + 200 + 200 steps at 10/s; condition 1:
    # 4 runs of 200 steps at the median measured rate (10/s); 60 s each.
    assert estimate.agent_steps == 100 + 200 + 200 + 4 * 200
    assert estimate.run_seconds == pytest.approx(1300 / 10 + 7 * 60)
    assert estimate.wall_seconds == pytest.approx(estimate.run_seconds / 2)
    assert estimate.sources == {CONDITIONS[0]: "measured", CONDITIONS[1]: "assumed"}
    unknown = sweep.estimate_compute(units, {}, workers=1)
    assert unknown.unknown_runs == 7 and unknown.rates == {}
    lines = sweep.describe_plan(units, 2, estimate)
    assert lines[0] == "Plan: 2 conditions x 2 games x 2 seeds = 8 runs, 2 worker(s)."


def test_default_workers_rule():
    def unit(replay_bytes):
        return sweep.RunUnit("c", "f", "Pong", 0, "d", (), 2, 100,
                             replay_bytes=replay_bytes)
    small, big = unit(10**7), unit(7 * 10**9)
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
    record = sweep.read_sweep_file(root)
    assert len(record["runs"]) == 8
    entry = record["runs"][f"{CONDITIONS[1]}/Breakout/seed_1"]
    assert entry["flagfile"] == f"experiments/configs/{CONDITIONS[1]}.flags"
    assert (entry["num_iterations"], entry["extra_flags"]) == (2, list(SHORT))
    assert os.path.isfile(os.path.join(root, CONDITIONS[0], "condition.flags"))
    assert not [name for name in os.listdir(root) if ".tmp" in name]
    with open(os.path.join(root, sweep.SWEEP_FILE), "w") as handle:
        json.dump({"something": "else"}, handle)
    with pytest.raises(ValueError, match="not a sweep record"):
        sweep.read_sweep_file(root)


def test_probe_rate_reads_the_second_iteration(tmp_path, monkeypatch):
    script = tmp_path / "fake_train.py"
    script.write_text(
        "import os, sys\n"
        "args = dict(a[2:].split('=', 1) for a in sys.argv[1:])\n"
        "assert args['num_iterations'] == '2' and args['steps_per_iteration'] == '100'\n"
        "assert args['min_replay_history'] == '50' and args['replay_capacity'] == '400'\n"
        "with open(os.path.join(args['root_dir'], 'metrics.csv'), 'w') as f:\n"
        "    f.write('iteration,agent_steps,train_steps_per_second\\n0,100,3.0\\n1,200,42.0\\n')\n")
    monkeypatch.setattr(conditions, "TRAIN_SCRIPT", str(script))
    flagfile = conditions.find_flagfile(CONDITIONS[0])
    assert sweep.probe_rate(flagfile, "Pong", steps=100, log=lambda _: None) == 42.0
    script.write_text("import sys\nsys.exit(3)\n")
    messages = []
    assert sweep.probe_rate(flagfile, "Pong", steps=100, log=messages.append) != 42.0
    assert any("probe failed (exit 3)" in m for m in messages)


class TickingClock:
    """A monotonic clock that advances `step` seconds at every reading."""

    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_progress_table_counts_runs_and_reads_progress_json(tmp_path):
    units = plan(tmp_path, seeds=(0,))
    silent = units[1].run_dir  # reports no progress, then fails

    def report_progress(process):
        if process.unit.run_dir != silent:
            os.makedirs(process.unit.run_dir, exist_ok=True)
            process.unit.run_directory.write_progress(
                {"iteration": 1, "agent_steps": 150, "steps_per_second": 25.0})

    launcher = FakeLauncher(fail=[silent], on_first_poll=report_progress)
    lines = []
    backend = local.LocalBackend(workers=2, launch=launcher)
    # Each clock reading is 10 s later and a table is due every 5 s: one
    # after each poll that leaves runs going. A fake run ends at its second
    # poll (poll_seconds=0: one look per poll).
    scheduler = sweep.Scheduler(units, backend, poll_seconds=0, out=lines.append,
                                progress_seconds=5, clock=TickingClock(10))
    with backend:
        scheduler.run(handle_signals=False)
    tables = [i for i, line in enumerate(lines) if line.startswith("Sweep: ")]
    assert len(tables) == 2
    first = lines[tables[0]:tables[0] + 4]
    # 150 of 200 steps done in the reporting run, 200 in each other one; 25 steps/s.
    assert first[0] == ("Sweep: 0 done, 0 failed, 2 running, 2 pending; 650 agent "
                        "steps left, ETA 0m26s")
    assert first[1].split() == ["run", "iteration", "agent", "steps", "steps/s"]
    assert first[2].split()[-3:] == ["2/2", "150", "25.0"]
    assert first[2].startswith(f"  {units[0].label}")
    assert first[3].split()[-3:] == ["-", "-", "-"]
    assert first[3].startswith(f"  {units[1].label}")
    second = lines[tables[1]]
    assert second == ("Sweep: 1 done, 1 failed, 2 running, 0 pending; 100 agent steps "
                      "left, ETA 0m02s")


def test_progress_table_shows_a_run_in_its_evaluation(tmp_path):
    units = plan(tmp_path, seeds=(0,), games=("Pong",))
    os.makedirs(units[0].run_dir)
    units[0].run_directory.write_progress({
        "phase": "evaluation", "iteration": 1, "agent_steps": 200,
        "steps_per_second": 25.0, "eval_games": 37, "eval_episodes": 100})
    scheduler = sweep.Scheduler(units, local.LocalBackend(workers=1,
                                                          launch=FakeLauncher()))
    scheduler._active = [types.SimpleNamespace(unit=units[0])]  # pylint: disable=protected-access
    lines = scheduler.progress_lines()
    assert lines[1].split() == ["run", "iteration", "agent", "steps", "steps/s"]
    assert lines[2].split()[-5:] == ["2/2", "eval", "37/100", "200", "25.0"]
    # The columns stay aligned with the wider cell.
    assert lines[1].index("steps/s") + len("steps/s") == len(lines[2])
    # In many environments the games end late: the agent steps played show
    # the evaluation moving.
    units[0].run_directory.write_progress({
        "phase": "evaluation", "iteration": 1, "agent_steps": 200,
        "steps_per_second": 25.0, "eval_games": 0, "eval_episodes": 100,
        "eval_steps": 183_400})
    assert scheduler.progress_lines()[2].split()[-7:] == [
        "2/2", "eval", "0/100", "(183,400", "steps)", "200", "25.0"]


def test_progress_table_is_optional_and_checked(tmp_path):
    units = plan(tmp_path, seeds=(0,), games=("Pong",))
    _, _, lines = run_sweep(units, FakeLauncher())
    assert not any(line.startswith("Sweep: ") for line in lines)
    backend = local.LocalBackend(workers=1, launch=FakeLauncher())
    with pytest.raises(ValueError, match="progress_seconds must be >= 0"):
        sweep.Scheduler(units, backend, progress_seconds=float("nan"))


def test_progress_json_reader_tolerates_absent_and_foreign_files(tmp_path):
    run = run_directory.RunDirectory(str(tmp_path))
    assert run.read_progress() is None
    run.write_progress({"iteration": 0, "agent_steps": 5})
    assert run.read_progress() == {"iteration": 0, "agent_steps": 5}
    for text in ("{torn", "[1, 2]"):
        (tmp_path / run_directory.PROGRESS_FILE).write_text(text)
        assert run.read_progress() is None
