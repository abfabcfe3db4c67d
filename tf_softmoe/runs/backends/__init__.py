"""Where a sweep's runs execute.

- `base.Backend`: the interface the `sweep.Scheduler` drives (submit,
  poll, cancel, close) and `base.RunHandle`, its record of a submitted run.
- `local.LocalBackend`: one child process per run on this machine, at most
  `workers` at a time.
- `ray_backend.RayBackend`: one Ray task per run, on a local Ray instance or
  a Ray cluster (needs the `ray` extra: pip install -e '.[ray]').
- `make_backend`: a backend by name, with its options checked.

A backend runs `RunUnit`s: self-contained, resumable units (a command
relative to the repository root and a run directory). It may retry a unit
(re-running it resumes from its newest checkpoint) but reports each unit
once, with its final exit status.
"""

from tf_softmoe.runs import sweep
from tf_softmoe.runs.backends import ray_backend
from tf_softmoe.runs.backends.base import Backend
from tf_softmoe.runs.backends.base import RunHandle
from tf_softmoe.runs.backends.local import LocalBackend

BACKENDS = ("local", "ray")
# Options of the Ray backend, as make_backend and the sweep binary name them.
RAY_OPTIONS = ("ray_address", "cpus_per_run", "gpus_per_run", "max_retries",
               "ray_dashboard")
RAY_DEFAULTS = {"cpus_per_run": 1.0, "gpus_per_run": 0.0, "max_retries": 3}


def check_backend_options(name, workers=None, **ray_options):
    """Refuses a bad backend choice before anything is planned or started.

    Args:
      name: one of `BACKENDS`.
      workers: parallel runs (local), or a cap on runs in flight (ray).
      **ray_options: `RAY_OPTIONS`; None (or False) means not given.

    Raises:
      ValueError: an unknown backend or option, a value out of range, a Ray
        option with the local backend, or Ray not installed; the message
        names the flag and the fix.
    """
    unknown = sorted(set(ray_options) - set(RAY_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown backend options {unknown}; known: {RAY_OPTIONS}.")
    if name not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {name!r}.")
    if workers is not None and int(workers) < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}.")
    given = [f"--{key}" for key, value in ray_options.items()
             if value is not None and value is not False]
    if name == "local" and given:
        raise ValueError(f"{', '.join(given)} apply only to --backend=ray; add "
                         "--backend=ray or drop them.")
    if name == "ray":
        values = {key: ray_options.get(key) for key in RAY_DEFAULTS}
        ray_backend.check_resources(**{key: RAY_DEFAULTS[key] if value is None else value
                                       for key, value in values.items()})
        try:
            ray_backend.import_ray()
        except ImportError as error:
            raise ValueError(str(error)) from error


def make_backend(name, units, sweep_root, workers=None, **ray_options):
    """The backend `name`, ready to run `units` under `sweep_root`.

    Args:
      name: "local" (child processes, `workers` at a time; default
        `sweep.default_workers`) or "ray" (Ray tasks; `workers` caps the runs
        in flight, else Ray queues them by resources).
      units: the sweep's `RunUnit`s.
      sweep_root: the sweep's root directory.
      workers: see `name`.
      **ray_options: ray_address (None: start a local Ray unless RAY_ADDRESS
        is set), cpus_per_run (1), gpus_per_run (0), max_retries (3),
        ray_dashboard (False).

    Raises:
      ValueError: as `check_backend_options`, or the Ray cluster cannot run
        the sweep (the sweep root is not shared storage).
    """
    check_backend_options(name, workers, **ray_options)
    if name == "local":
        return LocalBackend(workers=workers or sweep.default_workers(units))
    options = {key: RAY_DEFAULTS[key] if ray_options.get(key) is None else ray_options[key]
               for key in RAY_DEFAULTS}
    return ray_backend.RayBackend(
        sweep_root, address=ray_options.get("ray_address"),
        include_dashboard=bool(ray_options.get("ray_dashboard")),
        max_in_flight=workers, **options)


__all__ = ["BACKENDS", "Backend", "LocalBackend", "RAY_OPTIONS", "RunHandle",
           "check_backend_options", "make_backend"]
