"""The backend interface of the sweep scheduler."""

import abc
import dataclasses
import signal
import time
from typing import Any, List, Optional, Sequence, Tuple


@dataclasses.dataclass(eq=False)
class RunHandle:
    """A submitted run, as the backend that runs it tracks it.

    Handles compare by identity: the scheduler keeps them in a list and
    gets the same objects back from `Backend.poll`.

    Attributes:
      unit: the `sweep.RunUnit`.
      submitted: time.time() at submission.
      ref: the backend's own reference (a process, a task, a job).
    """
    unit: Any
    submitted: float = dataclasses.field(default_factory=time.time)
    ref: Any = None


class Backend(abc.ABC):
    """Runs `RunUnit`s somewhere and reports when each has ended.

    The scheduler calls `submit` while `max_in_flight` allows, then `poll`
    repeatedly with the handles still running; `cancel` on SIGINT/SIGTERM;
    `close` once at the end (also as a context manager).

    A unit's run must be resumable: the backend starts it with
    `unit.command(python)` in the repository root (`conditions.REPO_ROOT`,
    or the same tree shipped to a worker) with its output going to
    `unit.log_path`, and a cancelled or killed run continues from its newest
    checkpoint the next time it is submitted. Retries after a lost worker
    are the backend's business; `poll` reports a unit once, when it will not
    run again.

    Attributes:
      max_in_flight: how many units may run at once (None: submit them all
        and let the backend queue them, e.g. by declared resources).
    """

    max_in_flight: Optional[int] = None

    @abc.abstractmethod
    def submit(self, unit) -> RunHandle:
        """Starts (or queues) one unit; returns its handle."""

    @abc.abstractmethod
    def poll(self, handles: Sequence[RunHandle],
             timeout: float) -> List[Tuple[RunHandle, Optional[int]]]:
        """Waits up to `timeout` seconds for runs among `handles` to end.

        Returns:
          (handle, exit status) of each run that ended (possibly none);
          the status is None when the backend cannot tell it.
        """

    @abc.abstractmethod
    def cancel(self, handle: RunHandle, signum: int = signal.SIGTERM) -> None:
        """Asks a run to stop: its training process gets `signum` (it
        finishes its step, writes a checkpoint and exits). The run is still
        reported by `poll` when it has ended."""

    def close(self) -> None:
        """Releases the backend: runs still in flight are cancelled (they
        checkpoint) and waited for. Called once, also on an error."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False
