"""Fake runs for the sweep tests: they write what the train binary writes
(metrics.csv rows, policy/saved_model.pb), so no training happens."""

import csv
import os

from tf_softmoe.runs import conditions
from tf_softmoe.runs import sweep

CONDITIONS = ("rainbow_nature_flatten_x1", "dqn_nature_softmoe4")
SHORT = ("--num_iterations=2", "--steps_per_iteration=100", "--replay_capacity=1000",
         "--min_replay_history=50")


def plan(root, seeds=(0, 1), games=("Pong", "breakout"), extra=SHORT):
    flagfiles = [conditions.find_flagfile(name) for name in CONDITIONS]
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

    def __init__(self, unit, fail=False, on_first_poll=None):
        self.unit, self.fail, self.on_first_poll = unit, fail, on_first_poll
        self.polls, self.signals, self.code = 0, [], None

    def poll(self):
        self.polls += 1
        if self.polls == 1 and self.on_first_poll:
            self.on_first_poll(self)
        if self.code is None and self.polls >= 2 and not self.signals:
            if not self.fail:
                finish(self.unit.run_dir, self.unit.num_iterations)
            self.code = 1 if self.fail else 0
        return self.code

    def send_signal(self, signum):
        self.signals.append(signum)
        self.code = 128 + signum

    def wait(self):
        return self.code


class FakeLauncher:
    """The local backend's `launch` with fake processes."""

    def __init__(self, fail=(), on_first_poll=None):
        self.launched, self.processes, self.fail = [], [], set(fail)
        self.on_first_poll = on_first_poll
        self.most_active = 0

    def __call__(self, unit, log_path):
        assert log_path == os.path.join(unit.run_dir, "train.log")
        process = FakeProcess(unit, fail=unit.run_dir in self.fail,
                              on_first_poll=self.on_first_poll)
        self.launched.append(unit)
        self.processes.append(process)
        live = sum(p.code is None for p in self.processes)
        self.most_active = max(self.most_active, live)
        return process
