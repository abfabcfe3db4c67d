"""The local backend: one child process per run on this machine."""

import contextlib
import signal
import subprocess
import sys
import time

from tf_softmoe.runs import conditions
from tf_softmoe.runs.backends import base


def launch_subprocess(unit, log_path, python=sys.executable):
    """Starts a unit's train command with its output appended to `log_path`.

    The child runs in the repository root and in its own session, so a
    terminal's Ctrl-C reaches it only through the sweep (once).

    Returns:
      The `subprocess.Popen`.
    """
    unit.run_directory.create()
    command = unit.command(python)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} sweep starts: "
                  f"{' '.join(command)}\n")
        log.flush()
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                cwd=conditions.REPO_ROOT, start_new_session=True)


class LocalBackend(base.Backend):
    """Runs units as child processes of this one, `workers` at a time.

    Args:
      workers: how many run at once (>= 1).
      python: the interpreter that runs experiments/train.py.
      launch: function (unit, log_path) -> a process with poll(),
        send_signal(signum) and wait(); `launch_subprocess` by default
        (tests pass a fake).
    """

    def __init__(self, workers=1, python=sys.executable, launch=None):
        if int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers}.")
        self.max_in_flight = int(workers)
        self.python = python
        self._launch = launch or (
            lambda unit, log_path: launch_subprocess(unit, log_path, self.python))
        self._launched = []

    def submit(self, unit):
        handle = base.RunHandle(unit, ref=self._launch(unit, unit.log_path))
        self._launched.append(handle)
        return handle

    def poll(self, handles, timeout):
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            ended = []
            for handle in handles:
                code = handle.ref.poll()
                if code is not None:
                    ended.append((handle, code))
            if ended or time.monotonic() >= deadline:
                return ended
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def cancel(self, handle, signum=signal.SIGTERM):
        # Popen.send_signal is a no-op for a child it has reaped; one that
        # exits between that check and the kill raises ProcessLookupError,
        # and a child that has exited needs no stopping.
        with contextlib.suppress(ProcessLookupError):
            handle.ref.send_signal(signum)

    def close(self):
        """SIGTERMs the children still running (they checkpoint) and waits
        for them."""
        running = [h for h in self._launched if h.ref.poll() is None]
        for handle in running:
            self.cancel(handle)
        for handle in running:
            handle.ref.wait()
        self._launched = []
