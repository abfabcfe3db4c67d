"""A FrameReplayBuffer on disk: the checkpoint format, writing and reading.

Format version 1. A folder holds one ``.npy`` file per array of
``FrameReplayBuffer.state_dict()`` (``frames``, ``actions``, ``rewards``,
``flags`` with the written slots only, and ``sum_tree`` with all its nodes when
prioritized), each named ``<array>.<generation>.npy``, and the manifest
``replay_buffer.json``:

    {"format_version": 1, "generation": "<12 hex digits>",
     "config": {the buffer's constructor arguments},
     "counters": {"slots_written", "num_added", "final_frames_stored",
                  "max_priority", "priority_at_write"},
     "rng_state": {the sampling RNG's bit-generator state},
     "files": {array name: file name}}

Writers before these fields existed left out ``config.time_limit_cut`` (those
buffers bootstrapped at time-limit cuts, so it reads as ``"bootstrap"``) and
``counters.priority_at_write`` (it reads as ``max_priority`` for every pending
slot); ``upgrade`` fills both in, so every checkpoint of version 1 restores.
"""

import glob
import json
import os
import uuid

import numpy as np

from tf_softmoe import _files

FORMAT_VERSION = 1
MANIFEST = "replay_buffer.json"


def upgrade(state):
    """Checks a state's format version and fills in what older writers left out.

    Args:
        state: a dict as ``FrameReplayBuffer.state_dict()`` returns or ``read``
            gives (keys format_version, config, counters, rng_state, arrays).

    Returns:
        a new dict of the current layout (the arrays are not copied).

    Raises:
        ValueError: if the state has another format version.
    """
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"Replay state has format_version "
            f"{state.get('format_version')!r}; this code reads version "
            f"{FORMAT_VERSION}. Restore it with the tf_softmoe version that "
            f"wrote it, or start the run with an empty replay buffer.")
    config = dict(state["config"])
    config.setdefault("time_limit_cut", "bootstrap")
    counters = dict(state["counters"])
    counters.setdefault("priority_at_write",
                        [counters["max_priority"]] * (config["n_step"] + 1))
    return dict(state, config=config, counters=counters)


def constructor_args(config):
    """The ``FrameReplayBuffer(**kwargs)`` arguments of a saved ``config``."""
    kwargs = dict(config)
    kwargs["frame_shape"] = tuple(kwargs["frame_shape"])
    kwargs["frame_dtype"] = np.dtype(kwargs["frame_dtype"])
    return kwargs


def write(directory, state):
    """Writes ``state`` (a buffer's ``state_dict``) to ``directory``.

    Atomic for readers: the arrays go to new files (temporary name, fsync,
    rename) tagged with a fresh generation id, then the manifest that names
    that generation replaces the old one in a single rename; only then are
    the previous generation's files deleted. A crash at any point leaves a
    manifest that names a complete set of files. The caller keeps the buffer
    from changing until this returns (``state_dict(copy=False)`` gives views).

    Args:
        directory: folder to write into (created if missing).
        state: dict with keys format_version, config, counters, rng_state,
            arrays.

    Returns:
        the manifest path.
    """
    os.makedirs(directory, exist_ok=True)
    generation = uuid.uuid4().hex[:12]
    files = {}
    for name, array in state["arrays"].items():
        filename = f"{name}.{generation}.npy"
        _files.atomic_write(
            os.path.join(directory, filename),
            lambda f, a=array: np.save(f, a, allow_pickle=False))
        files[name] = filename
    manifest = {
        "format_version": state["format_version"],
        "generation": generation,
        "config": state["config"],
        "counters": state["counters"],
        "rng_state": state["rng_state"],
        "files": files,
    }
    payload = json.dumps(manifest, indent=2, sort_keys=True).encode()
    manifest_path = os.path.join(directory, MANIFEST)
    _files.atomic_write(manifest_path, lambda f: f.write(payload))
    _files.fsync_directory(directory)
    keep = set(files.values())
    for path in glob.glob(os.path.join(directory, "*.npy")):
        if os.path.basename(path) not in keep:
            os.remove(path)
    return manifest_path


def read(directory):
    """The state ``write`` stored in ``directory``, upgraded to this version.

    The arrays are memory-mapped read-only, so reading costs no memory until
    they are copied into a buffer.

    Raises:
        ValueError: if ``directory`` holds no manifest, or one of another
            format version.
    """
    manifest_path = os.path.join(directory, MANIFEST)
    if not os.path.exists(manifest_path):
        raise ValueError(
            f"No replay buffer saved in {directory!r} (missing {MANIFEST}); "
            f"write one with FrameReplayBuffer.save().")
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    state = upgrade({key: manifest.get(key) for key in (
        "format_version", "config", "counters", "rng_state")})
    state["arrays"] = {
        name: np.load(os.path.join(directory, filename), mmap_mode="r",
                      allow_pickle=False)
        for name, filename in manifest["files"].items()}
    return state
