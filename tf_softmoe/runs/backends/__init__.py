"""Where a sweep's runs execute.

- `base.Backend`: the interface the `sweep.Scheduler` drives (submit,
  poll, cancel, close) and `base.RunHandle`, its record of a submitted run.
- `local.LocalBackend`: one child process per run on this machine, at most
  `workers` at a time.
- `ray_backend.RayBackend`: one Ray task per run, on a local Ray instance or
  a Ray cluster (needs the `ray` extra: pip install -e '.[ray]').
- `slurm_backend.SlurmBackend`: one Slurm job per run, submitted through
  submitit (needs the `slurm` extra: pip install -e '.[slurm]').
- `make_backend`: a backend by name, with its options checked.

A backend runs `RunUnit`s: self-contained, resumable units (a command
relative to the repository root and a run directory). It may retry a unit
(re-running it resumes from its newest checkpoint) but reports each unit
once, with its final exit status.
"""

import os

from tf_softmoe.runs import sweep
from tf_softmoe.runs.backends import ray_backend
from tf_softmoe.runs.backends import slurm_backend
from tf_softmoe.runs.backends.base import Backend
from tf_softmoe.runs.backends.base import RunHandle
from tf_softmoe.runs.backends.local import LocalBackend

BACKENDS = ("local", "ray", "slurm")
# Options of the cluster backends, as make_backend and the sweep binary name
# them; each maps to the backends that take it.
RAY_OPTIONS = ("ray_address", "cpus_per_run", "gpus_per_run", "max_retries",
               "ray_dashboard")
SLURM_OPTIONS = ("cpus_per_run", "slurm_partition", "slurm_time_minutes",
                 "slurm_gpus_per_run", "slurm_signal_seconds", "slurm_extra")
BACKEND_OPTIONS = tuple(dict.fromkeys(RAY_OPTIONS + SLURM_OPTIONS))
RAY_DEFAULTS = {"cpus_per_run": 1.0, "gpus_per_run": 0.0, "max_retries": 3}
SLURM_DEFAULTS = {"cpus_per_run": 2, "slurm_time_minutes": 24 * 60,
                  "slurm_gpus_per_run": 0, "slurm_signal_seconds": 120,
                  "slurm_extra": ""}


def _given(value):
    return value is not None and value is not False and value != ""


def _with_defaults(options, defaults):
    return {key: defaults[key] if not _given(options.get(key)) else options[key]
            for key in defaults}


def _slurm_arguments(sweep_root, options):
    """SlurmBackend's keyword arguments from the sweep's option names."""
    values = _with_defaults(options, SLURM_DEFAULTS)
    return dict(
        folder=os.path.join(sweep_root, ".submitit"), partition=options.get("slurm_partition") or None,
        time_minutes=values["slurm_time_minutes"], cpus_per_run=values["cpus_per_run"],
        gpus_per_run=values["slurm_gpus_per_run"],
        sbatch_options=slurm_backend.parse_sbatch_options(values["slurm_extra"]),
        signal_grace_seconds=values["slurm_signal_seconds"])


def check_backend_options(name, workers=None, **options):
    """Refuses a bad backend choice before anything is planned or started.

    Args:
      name: one of `BACKENDS`.
      workers: parallel runs (local), or a cap on runs in flight (ray, slurm).
      **options: `BACKEND_OPTIONS`; None, False or "" means not given.

    Raises:
      ValueError: an unknown backend or option, a value out of range, an
        option of another backend, or the backend's package not installed;
        the message names the flag and the fix.
    """
    unknown = sorted(set(options) - set(BACKEND_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown backend options {unknown}; known: {BACKEND_OPTIONS}.")
    if name not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {name!r}.")
    if workers is not None and int(workers) < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}.")
    accepted = {"local": (), "ray": RAY_OPTIONS, "slurm": SLURM_OPTIONS}[name]
    foreign = [key for key, value in options.items()
               if _given(value) and key not in accepted]
    if foreign:
        owners = {key: " or ".join(f"--backend={backend}" for backend, keys in
                                   (("ray", RAY_OPTIONS), ("slurm", SLURM_OPTIONS))
                                   if key in keys) for key in foreign}
        detail = "; ".join(f"--{key} applies only to {owner}" for key, owner in owners.items())
        raise ValueError(f"{detail} (got --backend={name}): add the right --backend "
                         "or drop them.")
    if name == "ray":
        ray_backend.check_resources(**_with_defaults(options, RAY_DEFAULTS))
        try:
            ray_backend.import_ray()
        except ImportError as error:
            raise ValueError(str(error)) from error
    if name == "slurm":
        slurm_backend.check_options(**_slurm_arguments("", options))
        try:
            slurm_backend.import_submitit()
        except ImportError as error:
            raise ValueError(str(error)) from error


def make_backend(name, units, sweep_root, workers=None, **options):
    """The backend `name`, ready to run `units` under `sweep_root`.

    Args:
      name: "local" (child processes, `workers` at a time; default
        `sweep.default_workers`), "ray" (Ray tasks) or "slurm" (Slurm jobs);
        for the last two `workers` caps the runs in flight, else the cluster
        queues them by their declared resources.
      units: the sweep's `RunUnit`s.
      sweep_root: the sweep's root directory (submitit's job files go to
        <sweep_root>/.submitit).
      workers: see `name`.
      **options: Ray: ray_address (None: start a local Ray unless
        RAY_ADDRESS is set), cpus_per_run (1), gpus_per_run (0),
        max_retries (3), ray_dashboard (False). Slurm: cpus_per_run (2),
        slurm_partition (the cluster's default), slurm_time_minutes (1440),
        slurm_gpus_per_run (0), slurm_signal_seconds (120), slurm_extra
        (comma-separated sbatch name=value options).

    Raises:
      ValueError: as `check_backend_options`, or the Ray cluster cannot run
        the sweep (the sweep root is not shared storage).
    """
    check_backend_options(name, workers, **options)
    if name == "local":
        return LocalBackend(workers=workers or sweep.default_workers(units))
    if name == "slurm":
        return slurm_backend.SlurmBackend(max_in_flight=workers,
                                          **_slurm_arguments(sweep_root, options))
    return ray_backend.RayBackend(
        sweep_root, address=options.get("ray_address"),
        include_dashboard=bool(options.get("ray_dashboard")),
        max_in_flight=workers, **_with_defaults(options, RAY_DEFAULTS))


__all__ = ["BACKENDS", "BACKEND_OPTIONS", "Backend", "LocalBackend", "RAY_OPTIONS",
           "RunHandle", "SLURM_OPTIONS", "check_backend_options", "make_backend"]
