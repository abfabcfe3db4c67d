"""tf_softmoe.runs.backends.ray_backend: real tiny runs as Ray tasks on one
local Ray instance (2 CPUs), plus the shared-storage check and the option
checks with fakes."""

import dataclasses
import json
import os
import signal
import threading
import time

import pytest

from tf_softmoe.runs import backends
from tf_softmoe.runs import conditions
from tf_softmoe.runs import sweep
from tf_softmoe.runs.backends import ray_backend

try:
    import ray
except ImportError as error:  # the `ray` extra is not installed
    ray = None
    RAY_MISSING = f"needs the ray extra ({ray_backend.INSTALL_HINT}): {error}"

pytestmark = pytest.mark.ray

# Catch (84x84 frames) with a small DQN: a run of a few iterations takes
# seconds after TensorFlow's start-up.
CONDITION = "dqn_nature_flatten_x1"
TINY = ("--steps_per_iteration=100", "--min_replay_history=50", "--replay_capacity=1000",
        "--target_update_period=64", "--eval_episodes=0", "--jit_compile=false")


def needs_ray():
    if ray is None:
        pytest.skip(RAY_MISSING)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the whole module (ray.init costs ~12 s)."""
    needs_ray()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def plan(root, iterations, seeds=(0,)):
    return sweep.plan_runs(str(root), [conditions.find_flagfile(CONDITION)], ["catch"],
                           list(seeds), TINY + (f"--num_iterations={iterations}",))


def task_record(unit):
    path = os.path.join(unit.run_dir, ray_backend.TASK_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def iterations_in_metrics(unit):
    return [int(row["iteration"]) for row in unit.run_directory.metrics_rows()]


def newest_checkpoint_iteration(unit):
    directory = os.path.join(unit.run_dir, "checkpoints")
    if not os.path.isdir(directory):
        return -1
    done = sorted(name for name in os.listdir(directory)
                  if name.startswith("ckpt-") and name[5:].isdigit())
    if not done:
        return -1
    state = os.path.join(directory, done[-1], "state.json")
    with open(state, encoding="utf-8") as handle:
        return int(json.load(handle)["iteration"])


def wait_for(condition, what, seconds=240):
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def run_sweep(units, backend):
    lines = []
    with backend:
        outcomes = sweep.Scheduler(units, backend, poll_seconds=0.5,
                                   out=lines.append).run(handle_signals=False)
    return outcomes, lines


def test_sweep_finishes_reports_a_bad_run_once_and_skips_on_rerun(local_ray, tmp_path):
    good = plan(tmp_path, iterations=2, seeds=(0, 1))
    # A value the train binary refuses when it starts: a deterministic failure.
    bad = dataclasses.replace(good[0], seed=2, run_dir=str(tmp_path / "bad" / "seed_2"),
                              extra_flags=good[0].extra_flags + ("--update_period=0",))
    bad.refresh()
    outcomes, lines = run_sweep(good + [bad], ray_backend.RayBackend(tmp_path))
    by_dir = {outcome.unit.run_dir: outcome for outcome in outcomes}
    for unit in good:
        assert by_dir[unit.run_dir].returncode == 0, open(unit.log_path).read()[-3000:]
        assert unit.status.state == "finished"
        assert iterations_in_metrics(unit) == [0, 1]
        assert task_record(unit)["attempts"] == 1
    failed = by_dir[bad.run_dir]
    assert failed.returncode not in (0, None) and not failed.finished
    assert bad.log_path in failed.describe()
    assert any(bad.log_path in line for line in lines)
    # Reported, not retried: the task ran once.
    assert task_record(bad)["attempts"] == 1
    with open(bad.log_path, encoding="utf-8") as log:
        text = log.read()
    assert text.count("ray task starts") == 1 and "update_period" in text

    again = plan(tmp_path, iterations=2, seeds=(0, 1))
    outcomes, lines = run_sweep(again, ray_backend.RayBackend(tmp_path))
    assert outcomes == [] and lines == ["Skipping 2 finished run(s)."]


# Enough iterations (~0.15 s each on an idle machine) that the run cannot end
# on its own before the kill or the cancel reaches it.
RACE_FREE_ITERATIONS = 40


def test_killed_worker_is_retried_and_resumes_each_iteration_once(local_ray, tmp_path):
    (unit,) = plan(tmp_path, iterations=RACE_FREE_ITERATIONS)
    backend = ray_backend.RayBackend(tmp_path, max_retries=2)
    with backend:
        handle = backend.submit(unit)
        wait_for(lambda: newest_checkpoint_iteration(unit) >= 1, "iteration 1's checkpoint")
        killed = task_record(unit)
        os.kill(killed["worker_pid"], signal.SIGKILL)
        ended = []
        wait_for(lambda: ended.extend(backend.poll([handle], 1.0)) or ended,
                 "the retried task")
    assert ended[0][1] == 0, open(unit.log_path).read()[-3000:]
    record = task_record(unit)
    assert record["attempts"] == 2 and record["worker_pid"] != killed["worker_pid"]
    assert unit.refresh().state == "finished"
    assert iterations_in_metrics(unit) == list(range(RACE_FREE_ITERATIONS))
    with open(unit.log_path, encoding="utf-8") as log:
        text = log.read()
    assert text.count("ray task starts") == 2 and "Resumed from" in text


def test_cancel_reaches_the_training_process_which_checkpoints(local_ray, tmp_path):
    # A run that cannot finish before the cancel lands (ray.cancel's
    # interrupt took over 8 s to arrive once, on a busy machine).
    (unit,) = plan(tmp_path, iterations=100_000)
    backend = ray_backend.RayBackend(tmp_path)
    with backend:
        handle = backend.submit(unit)
        wait_for(lambda: newest_checkpoint_iteration(unit) >= 0, "a first checkpoint")
        backend.cancel(handle, signal.SIGINT)
        ended = []
        wait_for(lambda: ended.extend(backend.poll([handle], 1.0)) or ended,
                 "the cancelled task", seconds=120)
    assert ended[0][1] == 128 + signal.SIGTERM
    with open(unit.log_path, encoding="utf-8") as log:
        text = log.read()
    assert "cancelled; sending SIGTERM" in text
    assert "Stopped by signal 15; checkpoint written" in text
    assert unit.refresh().state == "partial"
    assert task_record(unit)["attempts"] == 1


def test_a_root_some_node_cannot_read_is_refused(tmp_path):
    def read_on_node(node_id, path):
        if node_id == "b":
            return "worker-b", "unreadable (No such file or directory)"
        with open(path, encoding="utf-8") as handle:
            return "head", handle.read()

    ray_backend.check_shared_storage(str(tmp_path), ["a"], read_on_node)
    with pytest.raises(ValueError, match="not visible from every Ray node: worker-b") as info:
        ray_backend.check_shared_storage(str(tmp_path), ["a", "b"], read_on_node)
    assert str(tmp_path) in str(info.value) and "NFS" in str(info.value)
    assert os.listdir(tmp_path) == []  # the token file is removed


def test_fractional_gpus_turn_on_memory_growth(local_ray, tmp_path):
    shared = ray_backend.RayBackend(tmp_path, gpus_per_run=0.25)
    whole = ray_backend.RayBackend(tmp_path, gpus_per_run=1)
    assert shared.child_environment()["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert "TF_FORCE_GPU_ALLOW_GROWTH" not in whole.child_environment()


@pytest.mark.parametrize("name, options, message", [
    ("local", {"cpus_per_run": 2}, "--cpus_per_run applies only to --backend=ray or --backend=slurm"),
    ("local", {"ray_dashboard": True}, "--ray_dashboard applies only to --backend=ray"),
    ("slurm", {"ray_address": "auto"}, "--ray_address applies only to --backend=ray"),
    ("ray", {"cpus_per_run": 0}, "--cpus_per_run must be > 0"),
    ("ray", {"gpus_per_run": -0.5}, "--gpus_per_run must be >= 0"),
    ("ray", {"gpus_per_run": 1.5}, "must be whole"),
    ("ray", {"max_retries": -1}, "--max_retries must be >= 0"),
    ("kubernetes", {}, "--backend must be one of"),
])
def test_bad_backend_options_are_refused(name, options, message):
    with pytest.raises(ValueError, match=message):
        backends.check_backend_options(name, **options)


def test_missing_ray_says_how_to_install_it(monkeypatch):
    import builtins  # pylint: disable=import-outside-toplevel
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ValueError, match=r"pip install -e '\.\[ray\]'"):
        backends.check_backend_options("ray")


def test_stop_file_stops_the_run_without_ray_cancels_interrupt(tmp_path):
    # The path `RayBackend.cancel` takes besides ray.cancel: the task sees the
    # run directory's stop file and SIGTERMs its training process.
    run_dir = str(tmp_path / "run")
    log_path = str(tmp_path / "run" / "train.log")
    child = ("import signal, sys, time\n"
             "signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))\n"
             "print('handler', 'installed', flush=True)\n"
             "time.sleep(120)\n")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, ray_backend.STOP_FILE), "w", encoding="utf-8"):
        pass  # a stale request of an earlier submission: removed at the start
    result = []
    task = threading.Thread(target=lambda: result.append(ray_backend.run_unit(
        ["-c", child], run_dir, log_path, {}, poll_seconds=0.05)))
    task.start()
    # The task's own log line quotes the child's source, so the marker the
    # child prints must not appear in that source verbatim.
    wait_for(lambda: os.path.exists(log_path)
             and "handler installed" in open(log_path).read(),
             "the child's start", seconds=30)
    assert task.is_alive()
    started = time.time()
    with open(os.path.join(run_dir, ray_backend.STOP_FILE), "w", encoding="utf-8"):
        pass
    task.join(30)
    assert result == [128 + signal.SIGTERM] and time.time() - started < 10
    assert "cancelled; sending SIGTERM" in open(log_path).read()
