"""The layout of one run directory, known in this one place.

What a run (`tf_softmoe.train.Experiment`) writes under its directory:

    config.json          the ExperimentConfig (resuming checks it)
    metrics.csv          one row per finished iteration
    checkpoints/         ckpt-<agent steps, 8 or more digits>/ (checkpoints.py)
    tensorboard/         event files
    policy/              the final greedy policy (PolicySaver), on exit
    q_network.keras      the final Q-network, on exit
    train.log            the run's output when a sweep started it
    progress.json        the newest progress line's numbers, rewritten with
                         each line (a sweep's progress table reads it)

The experiment, experiments/evaluate.py, the sweep and the analysis all read
and write these paths through `RunDirectory`.
"""

import csv
import dataclasses
import io
import json
import os
import re
from typing import Dict, List, Optional, Tuple

from tf_softmoe import _files
from tf_softmoe import saving

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
POLICY_DIR = "policy"
Q_NETWORK_FILE = saving.RUN_FILE
TRAIN_LOG = "train.log"
PROGRESS_FILE = "progress.json"

# The one checkpoint-name pattern. Checkpoints are named with `{:08d}` of
# their agent step, so a run past 99 999 999 steps writes 9 digits: the
# pattern takes 8 or more (an exact `\d{8}` would lose them).
CHECKPOINT_NAME = re.compile(r"^ckpt-(\d{8,})$")

# What a run's status says (`RunDirectory.status`).
FINISHED, PARTIAL, NEW = "finished", "partial", "new"


def checkpoint_name(number):
    """The directory name of checkpoint `number` (an agent step)."""
    if int(number) < 0:
        raise ValueError(f"A checkpoint number is an agent step >= 0, got {number}.")
    return f"ckpt-{int(number):08d}"


def checkpoint_number(name):
    """The number of a checkpoint directory name, None for any other name
    (e.g. a `.tmp-` directory being written)."""
    match = CHECKPOINT_NAME.match(os.path.basename(name))
    return int(match.group(1)) if match else None


class RunDirectoryError(ValueError):
    """A run directory's file is unusable (corrupt, foreign, not a file)."""


@dataclasses.dataclass
class RunStatus:
    """How far a run directory is.

    Attributes:
      state: "finished" (a metrics row for every iteration and the exported
        policy), "partial" (something written: it resumes) or "new"
        (nothing written, or no directory).
      iterations: metrics rows written.
      agent_steps: agent steps done (newest checkpoint or metrics row).
    """
    state: str
    iterations: int = 0
    agent_steps: int = 0


def _int(value):
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


class RunDirectory:
    """One run's directory: its paths and what they hold.

    Args:
      path: the run directory (it need not exist yet).
    """

    def __init__(self, path):
        if not path:
            raise ValueError("A run directory path is required (got an empty one).")
        self.path = os.fspath(path)

    @classmethod
    def of_policy(cls, policy_dir):
        """The run directory an exported `policy/` directory belongs to."""
        return cls(os.path.dirname(os.path.abspath(policy_dir.rstrip(os.sep))))

    def __repr__(self):
        return f"RunDirectory({self.path!r})"

    def __eq__(self, other):
        return isinstance(other, RunDirectory) and (
            os.path.abspath(self.path) == os.path.abspath(other.path))

    def __hash__(self):
        return hash(os.path.abspath(self.path))

    # ------------------------------------------------------------------ paths
    def join(self, *names):
        return os.path.join(self.path, *names)

    @property
    def config_path(self):
        return self.join(CONFIG_FILE)

    @property
    def metrics_path(self):
        return self.join(METRICS_FILE)

    @property
    def checkpoints_dir(self):
        return self.join(CHECKPOINT_DIR)

    @property
    def tensorboard_dir(self):
        return self.join(TENSORBOARD_DIR)

    @property
    def policy_dir(self):
        return self.join(POLICY_DIR)

    @property
    def q_network_path(self):
        return self.join(Q_NETWORK_FILE)

    @property
    def train_log_path(self):
        return self.join(TRAIN_LOG)

    def exists(self):
        return os.path.isdir(self.path)

    def create(self):
        """Makes the directory; a clear error when the path is a file."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise RunDirectoryError(
                f"{self.path} is a file, not a run directory: pass a directory path "
                "(an existing run directory or a new one).")
        os.makedirs(self.path, exist_ok=True)

    # ----------------------------------------------------------------- config
    def has_config(self):
        return os.path.exists(self.config_path)

    def read_config_dict(self):
        """config.json as a dict.

        Raises:
          FileNotFoundError: there is none (not a run directory).
          RunDirectoryError: it is unreadable, not JSON, or not a
            tf_softmoe config; the message names the file and the fix.
        """
        path = self.config_path
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} does not exist: {self.path} is not a tf_softmoe run "
                "directory (experiments/train.py writes config.json there).")
        try:
            with open(path, encoding="utf-8") as handle:
                values = json.load(handle)
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise RunDirectoryError(
                f"{path} is unreadable or not JSON ({error}). It is corrupt: delete "
                f"the run directory {self.path} (or restore config.json from a "
                "backup), or use another run directory.") from error
        if not isinstance(values, dict) or not {"game", "agent", "network",
                                                "schedule"} <= set(values):
            raise RunDirectoryError(
                f"{path} is not a tf_softmoe config (it needs game, agent, network and "
                f"schedule; found {sorted(values) if isinstance(values, dict) else type(values).__name__}). "
                f"{self.path} holds something else: use another run directory.")
        return values

    def read_config(self):
        """The `ExperimentConfig` stored in config.json.

        Raises:
          FileNotFoundError, RunDirectoryError: see `read_config_dict`; a
            config.json whose values no longer build a config is a
            `RunDirectoryError` too.
        """
        from tf_softmoe.train import config as config_lib  # pylint: disable=import-outside-toplevel
        values = self.read_config_dict()
        try:
            return config_lib.ExperimentConfig.from_dict(values)
        except (KeyError, TypeError, ValueError) as error:
            raise RunDirectoryError(
                f"{self.config_path} does not describe a valid tf_softmoe config "
                f"({type(error).__name__}: {error}). Use another run directory, or fix "
                "the named field.") from error

    def write_config(self, config):
        """Writes an `ExperimentConfig` to config.json atomically."""
        self.create()
        _files.atomic_write_text(self.config_path, config.to_json())

    # ---------------------------------------------------------------- metrics
    def read_metrics(self) -> Tuple[List[str], List[Dict[str, str]]]:
        """(column names, rows as dicts of strings) of metrics.csv; ([], [])
        when there is none."""
        path = self.metrics_path
        if not os.path.isfile(path):
            return [], []
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            return list(reader.fieldnames or []), list(reader)

    def metrics_rows(self):
        """The rows of metrics.csv as dicts of strings ([] if none)."""
        return self.read_metrics()[1]

    def write_metrics(self, fields, rows):
        """Replaces metrics.csv atomically."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore",
                                restval="")
        writer.writeheader()
        writer.writerows(rows)
        _files.atomic_write_text(self.metrics_path, buffer.getvalue())

    def append_metrics(self, row):
        """Adds one iteration's row (new columns are added at the end)."""
        fields, rows = self.read_metrics()
        for key in row:
            if key not in fields:
                fields.append(key)
        rows.append({k: ("" if v is None else v) for k, v in row.items()})
        self.write_metrics(fields, rows)

    def truncate_metrics(self, iteration):
        """Drops the rows of iterations >= `iteration` (they will be rerun)."""
        fields, rows = self.read_metrics()
        kept = [r for r in rows if _int(r["iteration"]) < iteration]
        if len(kept) != len(rows):
            self.write_metrics(fields, kept)

    # --------------------------------------------------------------- progress
    @property
    def progress_path(self):
        return self.join(PROGRESS_FILE)

    def write_progress(self, progress):
        """Replaces progress.json with the dict `progress` (atomically, so a
        reader never sees half a file)."""
        _files.atomic_write_text(self.progress_path, json.dumps(progress, sort_keys=True))

    def read_progress(self) -> Optional[Dict]:
        """progress.json as a dict; None when there is none or it is not a
        JSON object (progress is advisory: a reader shows nothing then)."""
        try:
            with open(self.progress_path, encoding="utf-8") as handle:
                progress = json.load(handle)
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        return progress if isinstance(progress, dict) else None

    # ------------------------------------------------------------ checkpoints
    def checkpoints(self) -> List[Tuple[int, str]]:
        """(number, path) of the checkpoint directories, newest first."""
        if not os.path.isdir(self.checkpoints_dir):
            return []
        found = []
        for name in os.listdir(self.checkpoints_dir):
            number = checkpoint_number(name)
            if number is not None:
                found.append((number, os.path.join(self.checkpoints_dir, name)))
        return sorted(found, reverse=True)

    def newest_checkpoint_step(self) -> Optional[int]:
        found = self.checkpoints()
        return found[0][0] if found else None

    # ----------------------------------------------------------------- status
    def is_exported(self):
        """Whether the final policy has been exported."""
        return os.path.isfile(os.path.join(self.policy_dir, "saved_model.pb"))

    def status(self, num_iterations):
        """The `RunStatus` for a schedule of `num_iterations` iterations."""
        if not self.exists():
            return RunStatus(NEW)
        rows = self.metrics_rows()
        agent_steps = max([_int(row.get("agent_steps")) for row in rows]
                          + [self.newest_checkpoint_step() or 0])
        if len(rows) >= num_iterations and self.is_exported():
            return RunStatus(FINISHED, len(rows), agent_steps)
        written = rows or agent_steps or self.has_config()
        return RunStatus(PARTIAL if written else NEW, len(rows), agent_steps)


__all__ = ["CHECKPOINT_NAME", "CONFIG_FILE", "METRICS_FILE", "RunDirectory",
           "PROGRESS_FILE", "RunDirectoryError", "RunStatus", "TRAIN_LOG", "checkpoint_name",
           "checkpoint_number"]
