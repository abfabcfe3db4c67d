"""Runs, sweeps and their analysis: the library behind experiments/sweep.py
and experiments/analyze.py.

- `run_directory`: the layout of one run directory (`RunDirectory`).
- `conditions`: the paper's conditions (flag files), figures and game sets
  under experiments/configs/, and a run's config from its flag file.
- `sweep`: a sweep's plan (`RunUnit`s), compute estimate and scheduler.
- `backends`: where the units run (`backends.local.LocalBackend`: child
  processes on this machine); `backends.base.Backend` is the interface.
- `analysis`: discovery, scores, matrices and aggregates of a sweep, and
  its report; `plots`: the report's figures.

Only `run_directory` is imported here (the training loop uses it); import
the others as modules.
"""

from tf_softmoe.runs.run_directory import RunDirectory
from tf_softmoe.runs.run_directory import RunDirectoryError
from tf_softmoe.runs.run_directory import RunStatus

__all__ = ["RunDirectory", "RunDirectoryError", "RunStatus"]
