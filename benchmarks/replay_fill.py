"""Synthetic transitions and a fast fill of a FrameReplayBuffer.

Adding 1 M frames through ``add`` one by one takes minutes of Python, so
benchmarks (and tests that need a full buffer) fill it with
``fill_with_synthetic_episodes``: it builds the arrays that ``add`` would have
written for the same synthetic episodes in vectorised chunks and hands them to
the buffer through ``load_state_dict``, the public way in which a checkpoint
is restored. tests/benchmarks/test_replay_fill.py checks that the result equals
adding the transitions one by one.
"""

import numpy as np

from tf_softmoe.replay import SumTree
from tf_softmoe.replay.frame_replay import EPISODE_START
from tf_softmoe.replay.frame_replay import TERMINAL

_CHUNK = 1 << 14


def synthetic_transitions(start, stop, frame_shape=(84, 84),
                          frame_dtype=np.uint8, episode_length=1000, seed=0):
    """Cheap deterministic transitions ``start..stop-1``.

    Frames cycle through 256 random patterns with the step number written
    into the first bytes, so every stored frame differs; episodes have
    ``episode_length`` steps and end with a terminal.

    Returns:
        frames [K, *frame_shape], actions [K] int32, rewards [K] float32 in
        {-1, 0, 1}, terminals [K] bool.
    """
    rng = np.random.default_rng(seed)
    frame_dtype = np.dtype(frame_dtype)
    patterns = rng.integers(0, 256, size=(256,) + tuple(frame_shape))
    patterns = patterns.astype(frame_dtype)
    steps = np.arange(start, stop, dtype=np.int64)
    frames = patterns[steps % 256]
    flat = frames.reshape(len(steps), -1)
    flat[:, 0] = (steps % 251).astype(frame_dtype)
    if flat.shape[1] > 1:
        flat[:, 1] = ((steps // 251) % 251).astype(frame_dtype)
    actions = (steps % 18).astype(np.int32)
    rewards = ((steps * 7919) % 3 - 1).astype(np.float32)
    terminals = (steps % episode_length) == episode_length - 1
    return frames, actions, rewards, terminals


def fill_with_synthetic_episodes(buffer, num_transitions, episode_length=1000,
                                 seed=0):
    """Puts ``num_transitions`` synthetic steps into an empty ``buffer``.

    The result is exactly the state that ``num_transitions`` calls of
    ``buffer.add(*synthetic_transitions(0, num_transitions, ...)[t])`` would
    produce (terminal-ended episodes, no truncations), with the sampling RNG
    left as it was. The written part of every array is built beside the
    buffer before it is copied in, so the peak memory is about twice the
    buffer's.

    Args:
        buffer: an empty ``FrameReplayBuffer``.
        num_transitions: steps to add; only the last ``capacity`` are stored.
        episode_length: steps per synthetic episode.
        seed: seed of the frame patterns.

    Raises:
        ValueError: if the buffer is not empty.
    """
    state = buffer.state_dict(copy=False)
    if state["counters"]["slots_written"]:
        raise ValueError("fill_with_synthetic_episodes needs an empty buffer.")
    capacity = buffer.capacity
    first = max(0, num_transitions - capacity)
    size = num_transitions - first
    layout = buffer.array_layout(capacity, buffer.frame_shape,
                                 buffer.frame_dtype)
    arrays = {name: np.empty((size,) + shape[1:], dtype)
              for name, (shape, dtype) in layout.items()}
    for start in range(first, num_transitions, _CHUNK):
        stop = min(start + _CHUNK, num_transitions)
        frames, actions, rewards, terminals = synthetic_transitions(
            start, stop, buffer.frame_shape, buffer.frame_dtype,
            episode_length, seed)
        steps = np.arange(start, stop)
        # Only the last `capacity` steps are written, so their slots are
        # distinct and all lie below `size`.
        slots = steps % capacity
        arrays["frames"][slots] = frames
        arrays["actions"][slots] = actions
        arrays["rewards"][slots] = rewards
        arrays["flags"][slots] = (
            np.where(terminals, TERMINAL, 0)
            | np.where(steps % episode_length == 0, EPISODE_START, 0))
    counters = dict(state["counters"], slots_written=num_transitions,
                    num_added=num_transitions)
    if buffer.prioritized:
        # Every transition with its n-step window and a whole stack stored
        # enters the tree at the priority it was added with.
        tree = SumTree(capacity)
        wrapped = num_transitions > capacity
        oldest = num_transitions % capacity if num_transitions >= capacity else 0
        lo = buffer.stack_size - 1 if wrapped else 0
        hi = max(size - buffer.n_step, lo)
        tree.set((oldest + np.arange(lo, hi)) % capacity,
                 counters["max_priority"])
        arrays["sum_tree"] = tree.nodes
    buffer.load_state_dict(dict(state, counters=counters, arrays=arrays))
