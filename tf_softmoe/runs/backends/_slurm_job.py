"""The callable a Slurm job runs (`TrainJob`); the standard library only.

submitit unpickles the callable in the job before it calls it. Importing
any tf_softmoe module there would run tf_softmoe/__init__.py, which imports
TensorFlow (about half a minute per job start and per requeue) into a
process that only supervises the training process. So this module imports
nothing of tf_softmoe, `TrainJob` holds plain data (no `RunUnit`), and the
Slurm backend registers this module with cloudpickle to travel by value
(`slurm_backend.make_train_job`): the job rebuilds the class from the pickle
without importing tf_softmoe.
"""

import contextlib
import os
import signal
import subprocess
import threading
import time

# Signals after which a training process has checkpointed and stopped
# because its job is being preempted, requeued or cancelled (not because
# the run is over).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)


def stopped_by_signal(code):
    """Whether a training process's exit status says a stop signal ended
    it (128 + signal from its handler, or -signal when it had none yet)."""
    return any(code in (128 + signum, -signum) for signum in STOP_SIGNALS)


class TrainJob:
    """A Slurm job's callable: runs one run's training process.

    submitit pickles it and calls it in the job. It is checkpointable in
    submitit's sense (it has `checkpoint`): on the job's SIGUSR2 submitit
    calls `checkpoint`, which makes the training process checkpoint and
    exit, then returns an equal callable for the requeued job.

    The training process is waited for in a helper thread: submitit runs
    `checkpoint` in a signal handler in the main thread, and a
    `Popen.wait()` interrupted there cannot be entered again (it deadlocks
    on the Popen's wait lock).

    Args:
      argv: the train command, interpreter first.
      cwd: the directory it runs in (the repository root).
      log_path: where its stdout and stderr are appended (the run's
        train.log).
      run_dir: the run directory (made if missing).
      label: names the run in the job's own log.
      stop_seconds: how long `checkpoint` waits for the training process.
    """

    def __init__(self, argv, cwd, log_path, run_dir, label="", stop_seconds=600.0):
        self.argv = [str(arg) for arg in argv]
        self.cwd = str(cwd)
        self.log_path = str(log_path)
        self.run_dir = str(run_dir)
        self.label = str(label)
        self.stop_seconds = float(stop_seconds)
        self._process = None
        self._ended = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_process"] = state["_ended"] = None
        return state

    def _launch(self):
        """Starts the training process in its own session (a signal meant
        for the job reaches it only through `_forward`, once)."""
        os.makedirs(self.run_dir, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} sweep starts: "
                      f"{' '.join(self.argv)}\n")
            log.flush()
            return subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=self.cwd, start_new_session=True)

    def _forward(self, signum, _frame=None):
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # exited since poll()
                process.send_signal(signum)

    def __call__(self):
        """Runs the training process to its end; returns its exit status.

        Raises:
          SystemExit: the process stopped on a signal (the job is being
            preempted, requeued or cancelled). The job then ends without a
            result, and Slurm requeues or cancels it.
        """
        job_id = os.environ.get("SLURM_JOB_ID", "?")
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        print(f"Slurm job {job_id} (restart {restarts}): {self.label}", flush=True)
        self._ended = threading.Event()
        self._process = self._launch()
        codes = []

        def reap():
            codes.append(self._process.wait())
            self._ended.set()

        threading.Thread(target=reap, name="train-process-wait", daemon=True).start()
        # submitit only logs SIGTERM in the job; the training process needs
        # it (scancel, a preemption) to checkpoint.
        signal.signal(signal.SIGTERM, self._forward)
        while not self._ended.is_set():
            # Short waits: Python runs signal handlers (submitit's SIGUSR2
            # checkpoint, the SIGTERM forward) in this thread between them.
            self._ended.wait(timeout=1.0)
        code = codes[0]
        print(f"Training process exited with status {code}.", flush=True)
        if stopped_by_signal(code):
            raise SystemExit(code)
        return code

    def checkpoint(self, *args, **kwargs):
        """Stops the training process with SIGUSR2 (it checkpoints) and
        returns the callable the requeued job runs (submitit's hook)."""
        del args, kwargs  # the callable takes none
        if self._process is not None:
            self._forward(signal.SIGUSR2)
            if not self._ended.wait(self.stop_seconds):
                print(f"Training process still running {self.stop_seconds:.0f} s after "
                      "SIGUSR2; requeueing anyway (it resumes from its previous "
                      "checkpoint).", flush=True)
        from submitit.helpers import DelayedSubmission  # pylint: disable=import-outside-toplevel
        return DelayedSubmission(type(self)(
            self.argv, self.cwd, self.log_path, self.run_dir, self.label, self.stop_seconds))

