"""The Slurm backend: its job callable and bookkeeping with a fake
executor (always run), and real sweeps on a Slurm cluster (marker `slurm`;
skipped, saying so, when no cluster answers: tools/slurm_one_node.sh starts
a one-node one)."""

import csv
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from experiments import sweep as sweep_cli
from tests.runs import sweep_fakes
from tf_softmoe.runs import conditions
from tf_softmoe.runs import sweep
from tf_softmoe.runs.backends import slurm_backend


# ---------------------------------------------------------------------------
# TrainJob: the job's callable, with a small Python child as training process.

class ScriptUnit:
    """A stand-in RunUnit whose training process is a Python snippet."""

    def __init__(self, tmp_path, script):
        self.run_dir = str(tmp_path / "run")
        self.log_path = os.path.join(self.run_dir, "train.log")
        self.label = "script unit"
        self.script = script

    @property
    def run_directory(self):
        run_dir = self.run_dir

        class Directory:
            @staticmethod
            def create():
                os.makedirs(run_dir, exist_ok=True)
        return Directory()

    def command(self, python):
        return [python, "-c", self.script]


# Writes "ready", then waits for SIGUSR2/SIGTERM, after which it "checkpoints"
# (writes the signal's number) and exits with 128 + signal, as train.py does.
STOPPABLE = """
import os, signal, sys, time
run_dir = os.path.dirname(os.path.abspath("{log}"))
def stop(signum, frame):
    open(os.path.join(run_dir, "checkpointed"), "a").write(f"{{signum}}\\n")
    sys.exit(128 + signum)
signal.signal(signal.SIGUSR2, stop)
signal.signal(signal.SIGTERM, stop)
open(os.path.join(run_dir, "ready"), "w").close()
time.sleep(60)
"""


def stoppable_unit(tmp_path):
    unit = ScriptUnit(tmp_path, "")
    unit.script = STOPPABLE.format(log=unit.log_path)
    return unit


def wait_for(path, seconds=30):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def make_job(unit, stop_seconds=600.0):
    return slurm_backend.make_train_job(unit, sys.executable, stop_seconds)


def test_train_job_returns_the_exit_status_and_appends_to_the_log(tmp_path):
    unit = ScriptUnit(tmp_path, "print('trained'); raise SystemExit(3)")
    os.makedirs(unit.run_dir)
    with open(unit.log_path, "w") as log:
        log.write("earlier attempt\n")
    assert make_job(unit)() == 3
    text = open(unit.log_path).read()
    assert text.startswith("earlier attempt\n")
    assert "sweep starts" in text and "trained" in text


def test_train_job_forwards_sigterm_and_leaves_no_result(tmp_path):
    unit = stoppable_unit(tmp_path)
    job = make_job(unit)
    previous = signal.getsignal(signal.SIGTERM)

    def term_when_ready():
        wait_for(os.path.join(unit.run_dir, "ready"))
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=term_when_ready, daemon=True).start()
    try:
        with pytest.raises(SystemExit) as stopped:
            job()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert open(os.path.join(unit.run_dir, "checkpointed")).read() == f"{signal.SIGTERM}\n"


def test_checkpoint_in_a_signal_handler_stops_the_child_and_requeues_itself(tmp_path):
    # As submitit does it: SIGUSR2's handler calls checkpoint() in the main
    # thread while __call__ waits there, then exits. A Popen.wait() in both
    # places would deadlock.
    unit = stoppable_unit(tmp_path)
    job = make_job(unit, stop_seconds=30)
    requeued = []

    def submitit_handler(signum, frame):
        requeued.append(job.checkpoint())
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR2, submitit_handler)
    previous_term = signal.getsignal(signal.SIGTERM)

    def usr2_when_ready():
        wait_for(os.path.join(unit.run_dir, "ready"))
        os.kill(os.getpid(), signal.SIGUSR2)

    threading.Thread(target=usr2_when_ready, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(SystemExit):
            job()
    finally:
        signal.signal(signal.SIGUSR2, previous)
        signal.signal(signal.SIGTERM, previous_term)
    assert time.monotonic() - started < 30
    assert open(os.path.join(unit.run_dir, "checkpointed")).read() == f"{signal.SIGUSR2}\n"
    [delayed] = requeued
    assert isinstance(delayed.function, slurm_backend.TrainJob)
    assert delayed.function is not job
    assert delayed.function.__getstate__() == job.__getstate__()


# A fresh interpreter, as submitit's job is: loads the pickled job with
# tf_softmoe and TensorFlow made unimportable, runs it, and round-trips the
# callable its checkpoint() hands to the requeued job.
UNPICKLE_AS_THE_JOB_DOES = r"""
import importlib.abc, pickle, sys
FORBIDDEN = ("tf_softmoe", "tensorflow")
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in FORBIDDEN:
            raise ImportError(f"the Slurm job imported {name}")
        return None
sys.meta_path.insert(0, Refuse())
with open(sys.argv[1], "rb") as handle:
    job = pickle.load(handle)
status = job()
import cloudpickle
requeued = pickle.loads(cloudpickle.dumps(job.checkpoint())).function
assert requeued.__getstate__() == job.__getstate__(), (vars(requeued), vars(job))
imported = sorted(m for m in sys.modules if m.partition(".")[0] in FORBIDDEN)
print("status", status, "imported", imported)
"""


def test_job_unpickles_and_runs_without_importing_tf_softmoe(tmp_path):
    cloudpickle = pytest.importorskip("cloudpickle")
    unit = ScriptUnit(tmp_path, "print('hi')")
    job_pickle = tmp_path / "submitted.pkl"
    job_pickle.write_bytes(cloudpickle.dumps(make_job(unit)))  # as submitit pickles
    result = subprocess.run(
        [sys.executable, "-c", UNPICKLE_AS_THE_JOB_DOES, str(job_pickle)],
        cwd=conditions.REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "status 0 imported []", result.stdout
    log = open(unit.log_path).read()
    assert "sweep starts" in log and log.endswith("hi\n")


# ---------------------------------------------------------------------------
# SlurmBackend with a fake executor.

class FakeJob:
    def __init__(self, folder, job_id, function=None):
        self.job_id, self.function = str(job_id), function
        self.paths = type("Paths", (), {})()
        self.paths.result_pickle = pathlib.Path(folder) / f"{job_id}_result.pkl"
        self.cancelled = False
        self.value = None

    def finish(self, value):
        self.value = value
        self.paths.result_pickle.write_text("done")

    def result(self):
        if isinstance(self.value, Exception):
            raise self.value
        return self.value

    def cancel(self, check=True):
        self.cancelled = True


class FakeCluster:
    """The executor, squeue and scontrol of a pretend cluster."""

    def __init__(self, folder):
        self.folder = folder
        self.parameters, self.jobs, self.states, self.exit_codes = {}, [], {}, {}
        self.attached = []

    def update_parameters(self, **parameters):
        self.parameters = parameters

    def submit(self, function):
        job = FakeJob(self.folder, 100 + len(self.jobs), function)
        self.jobs.append(job)
        self.states[job.job_id] = "PENDING"
        return job

    def job_states(self, job_ids):
        return {i: self.states[i] for i in job_ids if i in self.states}

    def attach(self, folder, job_id):
        job = FakeJob(folder, job_id)
        self.attached.append(job)
        return job

    def backend(self, **kwargs):
        return slurm_backend.SlurmBackend(
            self.folder, executor=self, job_states=self.job_states,
            exit_status=self.exit_codes.get, attach=self.attach, state_poll_seconds=0,
            **kwargs)


def one_unit(tmp_path):
    return sweep_fakes.plan(tmp_path / "sweep", seeds=[0], games=["Pong"])[0]


def test_submit_declares_the_resources_and_records_the_job(tmp_path):
    cluster = FakeCluster(str(tmp_path))
    backend = cluster.backend(partition="gpu", time_minutes=90, cpus_per_run=4,
                              gpus_per_run=1, signal_grace_seconds=200,
                              sbatch_options={"qos": "high"})
    unit = one_unit(tmp_path)
    handle = backend.submit(unit)
    parameters = cluster.parameters
    assert (parameters["partition"], parameters["time"], parameters["cpus_per_task"],
            parameters["gpus_per_node"], parameters["signal_delay_s"]) == (
                "gpu", 90, 4, 1, 200)
    assert parameters["mem"] == f"{-(-unit.memory_bytes // 2**20)}M"
    assert unit.memory_bytes > sweep.PROCESS_OVERHEAD_BYTES
    assert parameters["additional_parameters"] == {"chdir": conditions.REPO_ROOT,
                                                   "qos": "high"}
    job = handle.ref.function
    assert (job.argv, job.cwd, job.log_path, job.run_dir) == (
        unit.command(backend.python), conditions.REPO_ROOT, unit.log_path, unit.run_dir)
    assert job.stop_seconds == 200 - 15
    with open(os.path.join(unit.run_dir, slurm_backend.JOB_FILE)) as record:
        assert json.load(record) == {"job_id": "100", "folder": str(tmp_path)}
    assert backend.max_in_flight is None


def test_poll_reports_results_failures_and_waits_for_running_jobs(tmp_path):
    cluster = FakeCluster(str(tmp_path))
    backend = cluster.backend()
    units = sweep_fakes.plan(tmp_path / "sweep", seeds=[0], games=["Pong", "Qbert"])
    handles = [backend.submit(u) for u in units[:3]]
    cluster.states.update({"100": "RUNNING", "101": "COMPLETED", "102": "RUNNING"})
    handles[1].ref.finish(0)
    assert backend.poll(handles, 0.0) == [(handles[1], 0)]
    # Killed by Slurm (out of memory) without a result: scontrol's status.
    cluster.states["100"] = "OUT_OF_MEMORY"
    cluster.exit_codes["100"] = -9
    # The job's callable raised in submitit: no status.
    handles[2].ref.finish(RuntimeError("unpickling failed"))
    ended = backend.poll([handles[0], handles[2]], 0.0)
    assert {h.ref.job_id: code for h, code in ended} == {"100": -9, "102": None}


def test_a_job_forgotten_by_the_controller_has_ended(tmp_path):
    cluster = FakeCluster(str(tmp_path))
    backend = cluster.backend()
    handle = backend.submit(one_unit(tmp_path))
    del cluster.states[handle.ref.job_id]
    assert backend.poll([handle], 0.0) == [(handle, None)]


def test_squeue_failure_tells_nothing(tmp_path):
    cluster = FakeCluster(str(tmp_path))
    backend = cluster.backend()
    handle = backend.submit(one_unit(tmp_path))
    backend._job_states = lambda job_ids: None  # pylint: disable=protected-access
    assert backend.poll([handle], 0.0) == []


def test_resubmitting_follows_a_live_job_of_an_earlier_driver(tmp_path):
    cluster = FakeCluster(str(tmp_path))
    unit = one_unit(tmp_path)
    cluster.backend().submit(unit)
    cluster.states["100"] = "RUNNING"
    handle = cluster.backend().submit(unit)
    assert len(cluster.jobs) == 1 and handle.ref is cluster.attached[0]
    assert handle.ref.job_id == "100"
    cluster.states["100"] = "TIMEOUT"
    handle = cluster.backend().submit(unit)
    assert len(cluster.jobs) == 2 and handle.ref.job_id == "101"


def test_cancel_signals_running_jobs_and_cancels_queued_ones(tmp_path, monkeypatch):
    cluster = FakeCluster(str(tmp_path))
    backend = cluster.backend()
    units = sweep_fakes.plan(tmp_path / "sweep", seeds=[0], games=["Pong"])
    queued, running = backend.submit(units[0]), backend.submit(units[1])
    cluster.states["101"] = "RUNNING"
    commands = []
    monkeypatch.setattr(slurm_backend.subprocess, "run",
                        lambda command, **kwargs: commands.append(command))
    backend.cancel(queued, signal.SIGINT)
    backend.cancel(running, signal.SIGINT)
    assert queued.ref.cancelled and not running.ref.cancelled
    assert commands == [["scancel", "--signal=INT", "101"]]


def test_failed_run_is_reported_with_its_log_not_rerun(tmp_path):
    cluster = FakeCluster(str(tmp_path))
    backend = cluster.backend()
    unit = one_unit(tmp_path)
    lines = []

    def poll_finishing_with_bad_flags(handles, timeout):
        for handle in handles:
            handle.ref.finish(1)
        return slurm_backend.SlurmBackend.poll(backend, handles, timeout)

    backend.poll = poll_finishing_with_bad_flags
    [outcome] = sweep.Scheduler([unit], backend, out=lines.append).run(
        handle_signals=False)
    assert outcome.returncode == 1 and not outcome.finished
    assert f"log: {unit.log_path}" in lines[-1]
    assert len(cluster.jobs) == 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(time_minutes=0), "--slurm_time_minutes"),
    (dict(cpus_per_run=1.5), "--cpus_per_run"),
    (dict(gpus_per_run=0.5), "no fractional GPUs"),
    (dict(time_minutes=1, signal_grace_seconds=90), "shorter than the time limit"),
])
def test_bad_resource_requests_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        FakeCluster(str(tmp_path)).backend(**kwargs)


def test_sbatch_options():
    assert slurm_backend.parse_sbatch_options("qos=high, --account=rl,exclusive") == {
        "qos": "high", "account": "rl", "exclusive": None}
    with pytest.raises(ValueError, match="--slurm_time_minutes"):
        slurm_backend.parse_sbatch_options("time=10")
    with pytest.raises(ValueError, match="no name"):
        slurm_backend.parse_sbatch_options("=3")


def test_missing_submitit_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[slurm\]'"):
        slurm_backend.import_submitit()


@pytest.mark.parametrize("args, message", [
    (["--slurm_extra=mem=4G"], "set by the Slurm backend"),
    (["--slurm_gpus_per_run=-1"], "whole number >= 0"),
    (["--cpus_per_run=0.5"], "--cpus_per_run"),
])
def test_sweep_command_checks_slurm_flags_first(tmp_path, args, message):
    with pytest.raises(SystemExit, match=message):
        sweep_cli.main([f"--sweep_root={tmp_path}", "--conditions=dqn_nature_softmoe4",
                        "--games=Pong", "--seeds=0", "--backend=slurm"] + args)


# ---------------------------------------------------------------------------
# A real Slurm cluster.

def idle_slurm_node():
    if not shutil.which("sinfo"):
        return False
    try:
        result = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True,
                                text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and any(
        state.strip().rstrip("*") in ("idle", "mixed") for state in result.stdout.split())


needs_slurm = pytest.mark.skipif(
    not idle_slurm_node(),
    reason="no Slurm cluster: run tools/slurm_one_node.sh (as root) to start a "
           "one-node one")

# A tiny run on the catch game; iterations of 100 agent steps.
TINY_FLAGS = """--agent=dqn
--encoder=nature
--penultimate=flatten
--hidden_units=16
--steps_per_iteration=100
--min_replay_history=50
--update_period=4
--target_update_period=48
--replay_capacity=1000
--batch_size=16
--epsilon_decay_steps=100
--eval_episodes=0
--diagnostics_period=20
--jit_compile=false
"""


def tiny_units(tmp_path, iterations):
    flagfile = tmp_path / "tiny_catch.flags"
    flagfile.write_text(TINY_FLAGS)
    return sweep.plan_runs(str(tmp_path / "sweep"), [str(flagfile)], ["catch"], [0],
                           (f"--num_iterations={iterations}",))


def real_backend(tmp_path, monkeypatch):
    # Jobs inherit the environment: their train.py imports this checkout's
    # package, not another installed copy.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [conditions.REPO_ROOT, os.environ.get("PYTHONPATH")])))
    return slurm_backend.SlurmBackend(
        str(tmp_path / "sweep" / ".submitit"), time_minutes=10, cpus_per_run=1,
        signal_grace_seconds=60, state_poll_seconds=2)


def iterations_of(unit):
    with open(os.path.join(unit.run_dir, "metrics.csv")) as handle:
        return [int(row["iteration"]) for row in csv.DictReader(handle)]


@pytest.mark.slurm
@needs_slurm
def test_real_sweep_runs_to_the_end_and_is_skipped_on_rerun(tmp_path, monkeypatch):
    units = tiny_units(tmp_path, iterations=2)
    lines = []
    with real_backend(tmp_path, monkeypatch) as backend:
        [outcome] = sweep.Scheduler(units, backend, out=lines.append).run(
            handle_signals=False)
    assert outcome.finished, (lines, open(units[0].log_path).read()[-3000:])
    assert outcome.returncode == 0
    assert iterations_of(units[0]) == [0, 1]
    with real_backend(tmp_path, monkeypatch) as backend:
        assert sweep.Scheduler(units, backend, out=lines.append).run(
            handle_signals=False) == []
    assert "Skipping 1 finished run(s)." in lines


@pytest.mark.slurm
@needs_slurm
def test_real_preemption_checkpoints_requeues_and_resumes(tmp_path, monkeypatch):
    # Enough iterations (~0.15 s each on an idle machine) that the run cannot
    # end before the signal reaches it.
    units = tiny_units(tmp_path, iterations=40)
    unit = units[0]
    metrics = os.path.join(unit.run_dir, "metrics.csv")
    lines = []
    with real_backend(tmp_path, monkeypatch) as backend:
        scheduler = sweep.Scheduler(units, backend, out=lines.append)
        handle = backend.submit(unit)
        deadline = time.monotonic() + 300
        # Preempt once the first iteration is written: SIGUSR2 to the job, as
        # Slurm sends it before a time limit.
        while not (os.path.exists(metrics) and iterations_of(unit)):
            assert time.monotonic() < deadline, open(unit.log_path).read()[-3000:]
            assert not backend.poll([handle], 0.5), open(unit.log_path).read()[-3000:]
        subprocess.run(["scancel", "--signal=USR2", handle.ref.job_id], check=True)
        ended = []
        while not ended:
            assert time.monotonic() < deadline, open(unit.log_path).read()[-3000:]
            ended = backend.poll([handle], 5.0)
        del scheduler
    log = open(unit.log_path).read()
    assert ended == [(handle, 0)], log[-3000:]
    assert iterations_of(unit) == list(range(40))
    assert unit.refresh().state == "finished"
    assert log.count("sweep starts") == 2
    assert "Resumed from" in log
    assert "Signal 12" in log
