"""Where a sweep's runs execute.

- `base.Backend`: the interface the `sweep.Scheduler` drives (submit,
  poll, cancel, close) and `base.RunHandle`, its record of a submitted run.
- `local.LocalBackend`: one child process per run on this machine, at most
  `workers` at a time.

A backend runs `RunUnit`s: self-contained, resumable units (a command
relative to the repository root and a run directory). It may retry a unit
(re-running it resumes from its newest checkpoint) but reports each unit
once, with its final exit status.
"""

from tf_softmoe.runs.backends.base import Backend
from tf_softmoe.runs.backends.base import RunHandle
from tf_softmoe.runs.backends.local import LocalBackend

__all__ = ["Backend", "LocalBackend", "RunHandle"]
