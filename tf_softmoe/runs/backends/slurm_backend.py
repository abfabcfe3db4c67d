"""The Slurm backend: one Slurm job per run, submitted through submitit.

Every `RunUnit` becomes one batch job (`sbatch`, written by submitit) whose
callable, `TrainJob`, runs the unit's train command as a child process in
the repository root, with its output appended to the run's train.log, and
returns its exit status. The callable travels to the job by value and
imports nothing of tf_softmoe (`_slurm_job`), so the job's own process
starts without TensorFlow: only the training process imports it. The sweep root and the repository must lie on
storage the compute nodes see (the usual shared home or project
filesystem).

Preemption and time limits: jobs are submitted with
`--signal=USR2@<grace>`, so Slurm sends SIGUSR2 `grace` seconds before it
stops a job at its time limit (and `scancel --signal=USR2` does the same by
hand). submitit's handler then calls `TrainJob.checkpoint`, which passes the
signal to the training process, waits for it to write its checkpoint and
exit, and hands back the same callable; submitit requeues the job
(`scontrol requeue`) and the requeued job resumes the run from that
checkpoint. A job preempted by the scheduler (SIGTERM, then requeue) or
requeued by an administrator resumes the same way. A run that fails on its
own (bad flags, a crash) ends its job with that exit status and is not run
again.

Jobs are followed through their result files and `squeue` / `scontrol`,
so no accounting database (`sacct`) is needed.
"""

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time

from tf_softmoe import _files
from tf_softmoe.runs import conditions
from tf_softmoe.runs.backends import _slurm_job
from tf_softmoe.runs.backends import base

SUBMITIT_MISSING = ("The Slurm backend needs submitit (1.5.4): pip install -e '.[slurm]' "
                    "in the repository.")
# The record of a run's current job, in its run directory.
JOB_FILE = "slurm_job.json"
# The job's callable; it imports nothing of tf_softmoe (see _slurm_job).
TrainJob = _slurm_job.TrainJob
# Job states after which a job will not run again (squeue's %T).
ENDED_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
    "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "TIMEOUT"})
# Job states in which it has not started its callable yet.
QUEUED_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                           "CONFIGURING", "RESV_DEL_HOLD"})
# sbatch options the backend sets from its own arguments.
MANAGED_SBATCH_OPTIONS = frozenset({
    "partition", "time", "cpus-per-task", "gpus-per-node", "mem", "signal", "job-name",
    "output", "error", "chdir", "nodes", "ntasks-per-node", "requeue"})


def import_submitit():
    """submitit, or an ImportError that says how to install it."""
    try:
        import submitit  # pylint: disable=import-outside-toplevel
    except ImportError as error:
        raise ImportError(SUBMITIT_MISSING) from error
    return submitit


def parse_sbatch_options(text):
    """'qos=high,account=rl' -> {'qos': 'high', 'account': 'rl'}.

    Keys are sbatch's long options without the leading dashes; an option
    without a value (a flag) is given as 'name=' or 'name'.

    Raises:
      ValueError: an empty key, or an option the backend sets itself (from
        its own arguments: partition, time, CPUs, GPUs, memory, signal ...).
    """
    options = {}
    for item in (part.strip() for part in (text or "").split(",")):
        if not item:
            continue
        key, _, value = item.partition("=")
        key = key.strip().lstrip("-").replace("_", "-")
        if not key:
            raise ValueError(f"sbatch option {item!r} has no name; write name=value, "
                             "e.g. --slurm_extra=qos=high,account=myproject.")
        if key in MANAGED_SBATCH_OPTIONS:
            raise ValueError(f"sbatch option {key!r} is set by the Slurm backend; use its "
                             "own flag (--slurm_partition, --slurm_time_minutes, "
                             "--cpus_per_run, --slurm_gpus_per_run) instead.")
        options[key] = value.strip() or None
    return options


def check_options(time_minutes, cpus_per_run, gpus_per_run, signal_grace_seconds, **_):
    """Checks the resource requests of a `SlurmBackend`.

    Raises:
      ValueError: one Slurm cannot take (the message names it).
    """
    if int(time_minutes) < 1 or int(time_minutes) != time_minutes:
        raise ValueError(f"time_minutes (--slurm_time_minutes) must be a whole number >= 1, got {time_minutes}.")
    if int(cpus_per_run) < 1 or int(cpus_per_run) != cpus_per_run:
        raise ValueError(f"cpus_per_run (--cpus_per_run) must be a whole number >= 1 on Slurm, got "
                         f"{cpus_per_run}.")
    if int(gpus_per_run) < 0 or int(gpus_per_run) != gpus_per_run:
        raise ValueError(f"gpus_per_run (--slurm_gpus_per_run) must be a whole number >= 0 on Slurm (it has no "
                         f"fractional GPUs), got {gpus_per_run}.")
    if not 0 < signal_grace_seconds < 60 * time_minutes:
        raise ValueError(f"signal_grace_seconds (--slurm_signal_seconds) = {signal_grace_seconds} must be > 0 and "
                         f"shorter than the time limit ({time_minutes} min).")


def make_train_job(unit, python, stop_seconds=600.0):
    """The `TrainJob` that runs `unit` in a Slurm job, set to be pickled by
    value, so unpickling it in the job imports neither tf_softmoe nor
    TensorFlow.

    Args:
      unit: the `sweep.RunUnit`.
      python: the interpreter of the train command (on the nodes).
      stop_seconds: how long its `checkpoint` waits for the training process.
    """
    # submitit pickles with cloudpickle (one of its dependencies); a module
    # registered here travels by value, its class included.
    import cloudpickle  # pylint: disable=import-outside-toplevel
    cloudpickle.register_pickle_by_value(_slurm_job)
    return TrainJob(unit.command(python), conditions.REPO_ROOT, unit.log_path,
                    unit.run_dir, label=unit.label, stop_seconds=stop_seconds)


def squeue_states(job_ids):
    """{job id: state} of the jobs Slurm's controller still knows.

    Returns:
      The states (squeue's %T); None when squeue failed (controller not
      answering), so nothing can be told now.
    """
    if not job_ids:
        return {}
    try:
        result = subprocess.run(
            ["squeue", "-h", "--states=all", "-o", "%i|%T", "-j", ",".join(job_ids)],
            capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        # One id the controller has forgotten makes squeue fail.
        if "Invalid job id" in result.stderr:
            return {} if len(job_ids) == 1 else _squeue_one_by_one(job_ids)
        return None
    states = {}
    for line in result.stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id in job_ids:
            states[job_id] = state
    return states


def _squeue_one_by_one(job_ids):
    states = {}
    for job_id in job_ids:
        state = squeue_states([job_id])
        if state is None:
            return None
        states.update(state)
    return states


def scontrol_exit_status(job_id):
    """A finished job's exit status from `scontrol show job` (-signal when
    a signal ended it), or None if Slurm no longer knows it."""
    try:
        result = subprocess.run(["scontrol", "-o", "show", "job", job_id],
                                capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for field in result.stdout.split():
        if field.startswith("ExitCode="):
            status, _, signum = field[len("ExitCode="):].partition(":")
            if signum and int(signum):
                return -int(signum)
            return int(status)
    return None


class SlurmBackend(base.Backend):
    """Runs each unit as one Slurm job, through submitit.

    Every unit is submitted at once (`max_in_flight` None): Slurm queues
    them by their declared resources. A run's job is recorded in its run
    directory (slurm_job.json); a sweep re-run while that job is still
    queued or running follows it instead of submitting a second one, so a
    driver that died loses nothing.

    Args:
      folder: submitit's folder for job scripts, pickles and job logs (on
        shared storage; the sweep passes <sweep_root>/.submitit).
      partition: the partition (None: the cluster's default).
      time_minutes: each job's time limit. A run that needs longer is
        checkpointed and requeued at the limit, as often as it takes.
      cpus_per_run: CPUs per job.
      gpus_per_run: GPUs per job (a whole number; 0 for none).
      sbatch_options: further sbatch options, {name: value or None}
        (`parse_sbatch_options`).
      signal_grace_seconds: SIGUSR2 comes this long before the time limit;
        the run must write its checkpoint within it.
      max_timeouts: how often one run may hit the time limit and be
        requeued (preemptions are not counted).
      python: the interpreter of the jobs and their training processes
        (None: this one; it must exist at the same path on the nodes).
      state_poll_seconds: how often squeue is asked about running jobs.
      executor: a submitit.SlurmExecutor-like object (tests pass a fake);
        None: a `submitit.SlurmExecutor` on `folder`.
      job_states: function (job ids) -> {id: state} or None (`squeue_states`).
      exit_status: function (job id) -> status or None (`scontrol_exit_status`).
      attach: function (folder, job id) -> job, following a job of an
        earlier driver (None: `submitit.SlurmJob`).
      close_seconds: how long `close` waits for cancelled jobs.
      max_in_flight: at most this many jobs queued or running at once
        (None: all; Slurm queues them by their resources).

    Raises:
      ImportError: submitit is missing (the message says how to install it).
      ValueError: a resource request that Slurm cannot take.
    """

    def __init__(self, folder, partition=None, time_minutes=24 * 60, cpus_per_run=2,
                 gpus_per_run=0, sbatch_options=None, signal_grace_seconds=120,
                 max_timeouts=1000, python=None, state_poll_seconds=15.0, executor=None,
                 job_states=squeue_states, exit_status=scontrol_exit_status, attach=None,
                 close_seconds=300.0, max_in_flight=None):
        check_options(time_minutes=time_minutes, cpus_per_run=cpus_per_run,
                      gpus_per_run=gpus_per_run,
                      signal_grace_seconds=signal_grace_seconds)
        if max_in_flight is not None and int(max_in_flight) < 1:
            raise ValueError(f"max_in_flight must be >= 1 or None, got {max_in_flight}.")
        self.max_in_flight = None if max_in_flight is None else int(max_in_flight)
        self.folder = os.path.abspath(folder)
        self.python = python or sys.executable
        self.state_poll_seconds = state_poll_seconds
        self.close_seconds = close_seconds
        self._job_states = job_states
        self._exit_status = exit_status
        if executor is None or attach is None:
            submitit = import_submitit()
            executor = executor or submitit.SlurmExecutor(
                folder=self.folder, max_num_timeout=int(max_timeouts),
                python=shlex.quote(self.python))
            attach = attach or (lambda folder, job_id: submitit.SlurmJob(folder, job_id))
        self._executor = executor
        self._attach = attach
        self.stop_seconds = max(1.0, signal_grace_seconds - 15.0)
        additional = {"chdir": conditions.REPO_ROOT}
        additional.update(sbatch_options or {})
        self._parameters = dict(
            time=int(time_minutes), cpus_per_task=int(cpus_per_run), nodes=1,
            ntasks_per_node=1, signal_delay_s=int(signal_grace_seconds),
            stderr_to_stdout=True, additional_parameters=additional)
        if partition:
            self._parameters["partition"] = partition
        if gpus_per_run:
            self._parameters["gpus_per_node"] = int(gpus_per_run)
        self._in_flight = []
        self._last_check = {}

    # -------------------------------------------------------------- submit
    def _recorded_job(self, unit):
        """The job an earlier driver submitted for `unit`, if Slurm still
        queues or runs it."""
        path = os.path.join(unit.run_dir, JOB_FILE)
        try:
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
            job_id, folder = str(record["job_id"]), record["folder"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        states = self._job_states([job_id])
        if not states or states.get(job_id, "ENDED") in ENDED_STATES:
            return None
        return self._attach(folder, job_id)

    def submit(self, unit):
        job = self._recorded_job(unit)
        if job is None:
            unit.run_directory.create()
            parameters = dict(
                self._parameters, job_name=f"tfsm_{unit.condition}_{unit.game}_{unit.seed}",
                mem=f"{math.ceil(unit.memory_bytes / 2**20)}M")
            self._executor.update_parameters(**parameters)
            job = self._executor.submit(
                make_train_job(unit, self.python, self.stop_seconds))
            _files.atomic_write_text(
                os.path.join(unit.run_dir, JOB_FILE),
                json.dumps({"job_id": str(job.job_id), "folder": self.folder}))
        handle = base.RunHandle(unit, ref=job)
        self._in_flight.append(handle)
        return handle

    # ---------------------------------------------------------------- poll
    @staticmethod
    def _result(handle):
        """The exit status the job's callable returned; None if it failed
        in submitit (the job's log says why)."""
        try:
            return int(handle.ref.result())
        except Exception:  # pylint: disable=broad-except
            # submitit re-raises the job's error; the run's log and the
            # job's log (the folder) hold the details.
            return None

    def _ended(self, handles):
        """(handle, status) of the handles whose jobs will not run again."""
        ended, unsure = [], []
        for handle in handles:
            if handle.ref.paths.result_pickle.exists():
                ended.append((handle, self._result(handle)))
            elif (time.monotonic() - self._last_check.get(handle, -math.inf)
                  >= self.state_poll_seconds):
                unsure.append(handle)
        if not unsure:
            return ended
        states = self._job_states([str(h.ref.job_id) for h in unsure])
        if states is None:
            return ended
        for handle in unsure:
            self._last_check[handle] = time.monotonic()
            state = states.get(str(handle.ref.job_id), "ENDED")
            if state not in ENDED_STATES and state != "ENDED":
                continue
            if handle.ref.paths.result_pickle.exists():  # written as it ended
                ended.append((handle, self._result(handle)))
            else:
                ended.append((handle, self._exit_status(str(handle.ref.job_id))))
        return ended

    def poll(self, handles, timeout):
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            ended = self._ended(handles)
            for handle, _ in ended:
                self._last_check.pop(handle, None)
                if handle in self._in_flight:
                    self._in_flight.remove(handle)
            if ended or time.monotonic() >= deadline:
                return ended
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    # -------------------------------------------------------------- cancel
    def cancel(self, handle, signum=signal.SIGTERM):
        """A queued job is cancelled; a running one gets `signum` in every
        process of its steps (`scancel --signal`), so its training process
        checkpoints and the job ends."""
        job_id = str(handle.ref.job_id)
        state = (self._job_states([job_id]) or {}).get(job_id)
        if state in ENDED_STATES:
            return
        if state in QUEUED_STATES:
            handle.ref.cancel(check=False)
            return
        subprocess.run(["scancel", f"--signal={signal.Signals(signum).name[3:]}", job_id],
                       capture_output=True, timeout=60, check=False)

    def close(self):
        """Cancels the jobs still in flight (they checkpoint) and waits up
        to `close_seconds` for them to end."""
        running = list(self._in_flight)
        for handle in running:
            self.cancel(handle)
        deadline = time.monotonic() + self.close_seconds
        while running and time.monotonic() < deadline:
            for handle, _ in self.poll(running, min(5.0, self.state_poll_seconds)):
                running.remove(handle)
        self._in_flight = []
