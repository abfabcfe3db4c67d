"""Atomic, rotating checkpoints of a whole run.

Layout under `<root_dir>/checkpoints/`:

    ckpt-00000007/   (the agent step, 8 or more digits:
                     `run_directory.checkpoint_name`)
        tf/          tf.train.Checkpoint: online and target networks,
                     optimiser slots, agent-step and update counters, the
                     target-sync counter
        replay/      FrameReplayBuffer.save: frames, metadata, priorities and
                     the sampler's RNG state
        state.json   iteration, steps done in it, partial phase statistics,
                     Python/NumPy RNG states, and "complete": true

A checkpoint is written into `ckpt-00000007.tmp-<id>/`, every file is
fsync'ed, then the directory is renamed into place (atomic on POSIX) and the
parent directory fsync'ed. Only then are checkpoints beyond `keep` deleted. A
crash or a full disk leaves at worst a `.tmp-` directory, which is ignored and
cleaned up; the previous checkpoint is never touched.
"""

import errno
import json
import os
import shutil
import uuid

import tensorflow as tf
from absl import logging

from tf_softmoe import _files
from tf_softmoe.replay import persistence
from tf_softmoe.runs import run_directory

STATE_FILE = "state.json"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read."""


def _fsync_tree(path):
    for directory, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(directory, name), "rb") as f:
                os.fsync(f.fileno())
        _files.fsync_directory(directory)


def read_checked(path):
    """Reads a checkpoint's state.json after checking, without changing
    anything, that the whole checkpoint is readable.

    Every tensor of the TF checkpoint is read (TensorFlow checks each one's
    CRC), and the replay's manifest and array headers and sizes (its arrays
    are memory-mapped, so this costs no memory).

    Returns:
      The checkpoint's state (state.json).

    Raises:
      CheckpointError: a part is missing, corrupt or incomplete; the message
        names the checkpoint and the cause.
    """
    try:
        with open(os.path.join(path, STATE_FILE), encoding="utf-8") as f:
            state = json.load(f)
        if not isinstance(state, dict) or not state.get("complete"):
            raise ValueError(f"{STATE_FILE} is not marked complete")
        reader = tf.train.load_checkpoint(os.path.join(path, "tf", "ckpt"))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
        persistence.read(os.path.join(path, "replay"))
    except Exception as error:  # pylint: disable=broad-except
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise CheckpointError(f"Checkpoint {path} is unreadable ({type(error).__name__}: "
                              f"{first_line}).") from error
    return state


def newest_readable(paths):
    """The first of `paths` (newest first) that `read_checked` reads.

    Returns:
      (path, state, problems): the readable checkpoint (None when none is)
      and the `CheckpointError` messages of the newer unreadable ones.
    """
    problems = []
    for path in paths:
        try:
            return path, read_checked(path), problems
        except CheckpointError as error:
            problems.append(str(error))
    return None, None, problems


class CheckpointManager:
    """Writes and finds checkpoints of a run.

    Args:
      directory: `<root_dir>/checkpoints`.
      keep: how many complete checkpoints to keep (>= 1).
    """

    def __init__(self, directory, keep=2):
        self.directory = directory
        self.keep = max(1, int(keep))
        os.makedirs(directory, exist_ok=True)

    def checkpoints(self):
        """Complete checkpoint paths, newest first (by their number)."""
        found = []
        for name in os.listdir(self.directory):
            number = run_directory.checkpoint_number(name)
            if number is not None:
                found.append((number, os.path.join(self.directory, name)))
        return [path for _, path in sorted(found, reverse=True)]

    def save(self, number, write_fn, state):
        """Writes checkpoint `number` atomically.

        Args:
          number: the checkpoint's number (the count of agent steps or
            iterations; larger is newer).
          write_fn: `write_fn(tmp_dir)` writes the TF checkpoint and replay.
          state: JSON-serialisable dict stored as state.json.

        Returns:
          The final path.

        Raises:
          CheckpointError: it could not be written (e.g. the disk is full);
            the message names the cause, and the previous checkpoint is intact.
        """
        final = os.path.join(self.directory, run_directory.checkpoint_name(number))
        tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            os.makedirs(tmp)
            write_fn(tmp)
            with open(os.path.join(tmp, STATE_FILE), "w") as f:
                json.dump(dict(state, complete=True), f, indent=2, sort_keys=True)
            _fsync_tree(tmp)
            if os.path.exists(final):
                shutil.rmtree(final)
            os.rename(tmp, final)
            _files.fsync_directory(self.directory)
        except (OSError, ValueError) as error:
            shutil.rmtree(tmp, ignore_errors=True)
            previous = self.checkpoints()
            kept = (f"The previous checkpoint {previous[0]} is intact."
                    if previous else "No earlier checkpoint exists.")
            hint = (" The disk is full: free space (or point --root_dir elsewhere) "
                    "and rerun the same command to resume."
                    if getattr(error, "errno", None) == errno.ENOSPC else "")
            raise CheckpointError(
                f"Could not write checkpoint {final}: {error}. {kept}{hint}") from error
        for old in self.checkpoints()[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)
        self._remove_stale_tmp()
        return final

    def _remove_stale_tmp(self):
        for name in os.listdir(self.directory):
            if ".tmp-" in name:
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

    def restore_latest(self, restore_fn):
        """Restores the newest checkpoint that loads; older ones on failure.

        Args:
          restore_fn: `restore_fn(path, state)` restores everything from a
            checkpoint directory; it raises on a corrupt checkpoint.

        Returns:
          (path, state) of the restored checkpoint, or (None, None).
        """
        for path in self.checkpoints():
            try:
                with open(os.path.join(path, STATE_FILE)) as f:
                    state = json.load(f)
                if not state.get("complete"):
                    raise CheckpointError("state.json is not marked complete")
                restore_fn(path, state)
                return path, state
            except Exception as error:  # pylint: disable=broad-except
                logging.warning(
                    "Checkpoint %s is unreadable (%s: %s); trying the previous one.",
                    path, type(error).__name__, error)
        return None, None
