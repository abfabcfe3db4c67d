"""Atari-scale circular replay that stores each frame once (Dopamine style).

Storage. One slot per agent step holds the newest single frame of the
observation in which the action was taken, the action, the (already clipped)
reward and a byte of flags. The frame stack of a state is rebuilt at sampling
time from the ``stack_size`` consecutive slots ending at its index, with every
frame from before the episode's first slot replaced by zeros, so an episode's
first state is ``[0, 0, 0, f0]`` (what the environment wrapper shows the
agent) and no stack ever mixes two episodes. When an episode is cut
(``truncated``, a time limit) what follows depends on ``time_limit_cut``:
``"drop"`` (the default, Dopamine's behaviour) makes the episode's last
``n_step`` transitions unsampleable, since their n-step window reaches the cut
and no later frame is known; ``"bootstrap"`` keeps them and bootstraps from
the final observation, whose newest frame the caller passes and which goes
into an extra *final-frame slot* that is never sampled as a transition but
completes the last transition's next state. At capacity 1 M with 84x84 uint8
frames the buffer holds 7 056 B of frame + 4 B action + 4 B reward + 1 B flags
per slot, plus 16 B of sum tree when prioritized: about 7.08 KB per
transition.

n-step targets are computed at sampling time. For index ``t`` the window is
``t, t+1, ..., t+n'-1`` with ``n' = n_step`` unless the episode ends earlier
(terminal or truncation at step ``t+k``, then ``n' = k+1``):

    reward   = sum_{k < n'} gamma^k r_{t+k}
    discount = 0                if the window ends at a terminal
               gamma^{n'}       otherwise (n' < n_step only at a terminal,
                                or at a truncation with "bootstrap")
    next_state = the state at t + n' (the final observation at a truncation;
                 a valid all-in-one-episode stack, but irrelevant, after a
                 terminal).

So with the default ``time_limit_cut="drop"`` every non-terminal target uses
``gamma^n_step``, as Dopamine's agents do (they multiply by the constant
``cumulative_gamma``).

Sampleable indices. Counting slots from the oldest stored one, an index is
sampleable when (a) at least ``n_step`` slots were written after it (its window
and next-state frame exist), (b) once the buffer has wrapped, it is not among
the ``stack_size - 1`` oldest slots (their stacks would reach into overwritten
slots), and (c) it is neither a final-frame slot nor a transition dropped at a
time-limit cut. This excludes at most
``n_step + stack_size - 1`` transitions, as Dopamine does.

Prioritized replay (Dopamine's flavour; Schaul et al., 2016): a sum tree over
the slots holds the priority of every sampleable transition and 0 elsewhere. A
transition enters the tree when it becomes sampleable, at the largest priority
recorded when it was added (initially 1.0; as Dopamine, which gives the
priority at ``add`` time, although the transition becomes sampleable only
``n_step`` adds later). ``update_priorities(indices, p)`` stores
``p ** priority_exponent``; Dopamine passes ``sqrt(loss + 1e-10)`` with
exponent 1 (the default). A batch is drawn by stratified sampling (the total
mass split into ``batch_size`` equal segments, one draw in each), and

    probabilities      P_i = priority_i / sum(priorities)
    importance_weights w_i = (1 / (N P_i))^beta / max_j (1 / (N P_j))^beta
                           = P_i^-beta / max_j P_j^-beta   (batch max),

with ``beta = importance_exponent`` (0.5: ``1/sqrt(P)`` normalised by its max).

Threads. ``add``, ``sample``, ``update_priorities`` and the checkpoint methods
hold one re-entrant lock, so a sampler on another thread can run beside the
collector. NumPy releases the GIL during the large copies, so such an overlap
is real.

Reference: Dopamine's ``circular_replay_buffer`` and
``prioritized_replay_buffer`` (Castro et al., 2018), read for behaviour only.
"""

import json
import math
import operator
import threading

import numpy as np

from tf_softmoe.replay import persistence
from tf_softmoe.replay.sum_tree import SumTree
from tf_softmoe.replay.sum_tree import check_indices

# Bits of the per-slot flag byte.
TERMINAL = 1        # The env reached a terminal state after the action.
TRUNCATED = 2       # The episode was cut after the action (time limit).
EPISODE_START = 4   # The slot's frame is the first frame of an episode.
FINAL_FRAME = 8     # The slot holds only an episode's final frame.
CUT = 16            # The slot's transition was dropped at a time-limit cut.
_EPISODE_END = TERMINAL | TRUNCATED
# Slots whose own transition is never sampled (their frames still fill
# stacks).
_NOT_A_TRANSITION = FINAL_FRAME | CUT

# What happens to the last transitions of an episode cut by a time limit.
TIME_LIMIT_CUTS = ("drop", "bootstrap")

_INT32 = np.iinfo(np.int32)


class FrameReplayBuffer:
    """Circular replay of single frames with sampling-time stacks and n-step.

    ``len(buffer)`` is the number of transitions currently stored (final-frame
    slots excluded; at most ``capacity``); ``num_sampleable`` is how many of
    them ``sample`` can draw right now; ``num_added`` counts every ``add`` call
    since creation (it keeps growing after the buffer wraps).

    Args:
        capacity: number of slots (transitions plus the rare final-frame
            slots); must exceed ``n_step + stack_size``.
        frame_shape: shape of one frame, e.g. ``(84, 84)``.
        stack_size: frames per state (the newest last along the final axis).
        n_step: length of the multi-step return window.
        gamma: discount per step, in ``[0, 1]``.
        prioritized: sample proportionally to stored priorities (sum tree).
        priority_exponent: ``alpha``; ``update_priorities`` stores
            ``p ** alpha``.
        importance_exponent: ``beta`` of the importance weights.
        frame_dtype: dtype of stored frames (and of sampled states).
        seed: seed of the sampling RNG (``numpy.random.default_rng``).
        time_limit_cut: ``"drop"`` (default, as Dopamine's
            ``OutOfGraphReplayBuffer``, which the labs/moes configs bind): the
            last ``n_step`` transitions of an episode cut by a time limit are
            never sampled. ``"bootstrap"``: they are kept, with a shorter
            window that bootstraps from the final observation
            (``gamma^n'``); ``add`` then needs ``next_frame`` at a cut.

    Raises:
        ValueError: on invalid arguments, naming the argument and the fix.
    """

    def __init__(self, capacity, frame_shape=(84, 84), stack_size=4, n_step=1,
                 gamma=0.99, prioritized=False, priority_exponent=1.0,
                 importance_exponent=0.5, frame_dtype=np.uint8, seed=None,
                 time_limit_cut="drop"):
        self._stack_size = _positive_int(stack_size, "stack_size")
        self._n_step = _positive_int(n_step, "n_step")
        capacity = _positive_int(capacity, "capacity")
        if capacity <= self._n_step + self._stack_size:
            raise ValueError(
                f"capacity={capacity} is too small for n_step={self._n_step} "
                f"and stack_size={self._stack_size}: it must exceed n_step + "
                f"stack_size = {self._n_step + self._stack_size}.")
        self._capacity = capacity
        self._frame_shape = _frame_shape(frame_shape)
        self._frame_dtype = np.dtype(frame_dtype)
        gamma = float(gamma)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}.")
        self._gamma = gamma
        self._prioritized = bool(prioritized)
        self._priority_exponent = _non_negative(priority_exponent,
                                                "priority_exponent")
        self._importance_exponent = _non_negative(importance_exponent,
                                                  "importance_exponent")
        if time_limit_cut not in TIME_LIMIT_CUTS:
            raise ValueError(
                f"time_limit_cut must be one of {TIME_LIMIT_CUTS}, got "
                f"{time_limit_cut!r}: 'drop' (Dopamine's behaviour) or "
                f"'bootstrap'.")
        self._time_limit_cut = time_limit_cut
        self._rng = np.random.default_rng(seed)
        self._lock = threading.RLock()

        layout = self.array_layout(capacity, self._frame_shape,
                                   self._frame_dtype, prioritized=False)
        # np.zeros gets zero pages from the OS lazily: a 1 M buffer costs
        # resident memory only as slots are written.
        self._frames = np.zeros(*layout["frames"])
        self._actions = np.zeros(*layout["actions"])
        self._rewards = np.zeros(*layout["rewards"])
        self._flags = np.zeros(*layout["flags"])
        self._sum_tree = SumTree(capacity) if self._prioritized else None

        self._gamma_powers = self._gamma ** np.arange(self._n_step,
                                                      dtype=np.float64)
        self._stack_offsets = np.arange(-(self._stack_size - 1), 1,
                                        dtype=np.int64)
        self._window_offsets = np.arange(self._n_step, dtype=np.int64)

        self._slots_written = 0
        self._num_added = 0
        # Slots that are not transitions (final frames and cut tails); the
        # checkpoint key keeps its historical name.
        self._final_frames_stored = 0
        self._max_priority = 1.0
        # The largest priority at the write of each of the last n_step + 1
        # slots: a slot enters the tree n_step writes later at that value.
        self._priority_at_write = np.ones(self._n_step + 1)

    # ------------------------------------------------------------------ sizes

    @staticmethod
    def array_layout(capacity, frame_shape=(84, 84), frame_dtype=np.uint8,
                     prioritized=False):
        """Shapes and dtypes of every array a buffer of this size allocates.

        The allocator uses this table, so ``nbytes`` computed from it matches
        a real buffer without allocating one.

        Returns:
            dict name -> (shape, dtype).
        """
        layout = {
            "frames": ((int(capacity),) + tuple(frame_shape),
                       np.dtype(frame_dtype)),
            "actions": ((int(capacity),), np.dtype(np.int32)),
            "rewards": ((int(capacity),), np.dtype(np.float32)),
            "flags": ((int(capacity),), np.dtype(np.uint8)),
        }
        if prioritized:
            layout["sum_tree"] = ((2 * int(capacity),), np.dtype(np.float64))
        return layout

    @classmethod
    def estimate_nbytes(cls, capacity, frame_shape=(84, 84),
                        frame_dtype=np.uint8, prioritized=False):
        """Total bytes a buffer of these settings allocates (no allocation)."""
        total = 0
        layout = cls.array_layout(capacity, frame_shape, frame_dtype,
                                  prioritized)
        for shape, dtype in layout.values():
            total += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return total

    def nbytes(self):
        """Bytes of all arrays: frames, actions, rewards, flags, sum tree."""
        total = (self._frames.nbytes + self._actions.nbytes
                 + self._rewards.nbytes + self._flags.nbytes)
        if self._sum_tree is not None:
            total += self._sum_tree.nbytes
        return int(total)

    # ------------------------------------------------------------- properties

    @property
    def capacity(self):
        return self._capacity

    @property
    def frame_shape(self):
        return self._frame_shape

    @property
    def frame_dtype(self):
        return self._frame_dtype

    @property
    def stack_size(self):
        return self._stack_size

    @property
    def n_step(self):
        return self._n_step

    @property
    def gamma(self):
        return self._gamma

    @property
    def prioritized(self):
        return self._prioritized

    @property
    def time_limit_cut(self):
        return self._time_limit_cut

    @property
    def num_added(self):
        """Number of ``add`` calls since creation (grows past ``capacity``)."""
        return self._num_added

    @property
    def max_priority(self):
        """Largest priority stored so far (after the exponent); first 1.0."""
        return self._max_priority

    @property
    def sum_tree(self):
        """The ``SumTree`` of a prioritized buffer, else None (read only)."""
        return self._sum_tree

    def __len__(self):
        """Transitions currently stored.

        Final-frame slots and transitions dropped at a time-limit cut are not
        counted.
        """
        with self._lock:
            size = min(self._slots_written, self._capacity)
            return size - self._final_frames_stored

    @property
    def num_sampleable(self):
        """Transitions ``sample`` can draw now (see the module docstring)."""
        with self._lock:
            oldest, lo, hi = self._sampleable_range()
            if hi <= lo:
                return 0
            size = min(self._slots_written, self._capacity)
            excluded = (oldest + np.concatenate(
                [np.arange(0, lo), np.arange(hi, size)])) % self._capacity
            finals_excluded = int(np.count_nonzero(
                self._flags[excluded] & _NOT_A_TRANSITION))
            return (hi - lo) - (self._final_frames_stored - finals_excluded)

    def can_sample(self, batch_size):
        """Whether ``sample(batch_size)`` would succeed now.

        It needs at least ``batch_size`` sampleable transitions and, when
        prioritized, a positive total priority.
        """
        with self._lock:
            if self.num_sampleable < batch_size:
                return False
            return self._sum_tree is None or self._sum_tree.total > 0.0

    def __repr__(self):
        return (f"FrameReplayBuffer(capacity={self._capacity}, "
                f"frame_shape={self._frame_shape}, "
                f"stack_size={self._stack_size}, "
                f"n_step={self._n_step}, gamma={self._gamma}, "
                f"prioritized={self._prioritized}, "
                f"time_limit_cut={self._time_limit_cut!r}, stored={len(self)}, "
                f"num_added={self._num_added})")

    # ------------------------------------------------------------------ adding

    def add(self, frame, action, reward, terminal, truncated=False,
            next_frame=None):
        """Stores one agent step.

        The first ``add`` after an episode ended (or into an empty buffer)
        starts a new episode. Every episode must end with ``terminal=True`` or
        ``truncated=True``; to abandon one midway (e.g. the environment was
        reset after restoring a checkpoint) call ``truncate_open_episode``.

        Args:
            frame: the newest single frame [*frame_shape] of the observation in
                which ``action`` was taken, of dtype ``frame_dtype``.
            action: integer action (stored as int32).
            reward: the reward to learn on (clip it before), finite.
            terminal: True iff the environment reached a terminal state after
                ``action`` (the target then does not bootstrap).
            truncated: True iff the episode was cut after ``action`` (e.g. time
                limit). With ``time_limit_cut="drop"`` the episode's last
                ``n_step`` transitions become unsampleable; with
                ``"bootstrap"`` their targets bootstrap from ``next_frame``.
            next_frame: the newest frame of the final observation. Required
                when ``truncated`` (and not ``terminal``) under
                ``time_limit_cut="bootstrap"``, ignored under ``"drop"``
                (nothing bootstraps from it there); optional when
                ``terminal`` (then the sampled next state is the true final
                observation rather than an irrelevant stand-in); not allowed
                mid-episode, where the next ``add`` supplies that frame.

        Raises:
            ValueError: on a frame of the wrong shape or dtype, a non-integer
                or out-of-int32 action, a non-finite reward, a truncation
                without ``next_frame`` or a ``next_frame`` mid-episode.
        """
        frame = self._check_frame(frame, "frame")
        action = _check_action(action)
        reward = float(reward)
        if not math.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward}.")
        terminal = bool(terminal)
        truncated = bool(truncated)
        if next_frame is not None:
            if not (terminal or truncated):
                raise ValueError(
                    "next_frame was given for a step that neither terminates "
                    "nor truncates the episode; mid-episode the next add() "
                    "supplies that frame. Pass next_frame only with terminal "
                    "or truncated.")
            next_frame = self._check_frame(next_frame, "next_frame")
        elif (truncated and not terminal
              and self._time_limit_cut == "bootstrap"):
            raise ValueError(
                "truncated=True needs next_frame (the newest frame of the "
                "final observation) so the last transition can bootstrap from "
                "it (time_limit_cut='bootstrap').")
        cut = truncated and not terminal and self._time_limit_cut == "drop"
        if cut:
            next_frame = None
        with self._lock:
            flags = ((TERMINAL if terminal else 0)
                     | (TRUNCATED if truncated else 0))
            if self._next_add_starts_episode():
                flags |= EPISODE_START
            self._write_slot(frame, action, reward, flags)
            self._num_added += 1
            if cut:
                self._drop_cut_tail()
            if next_frame is not None:
                self._write_slot(next_frame, 0, 0.0, FINAL_FRAME)

    def truncate_open_episode(self):
        """Closes an episode that will not continue, without a final frame.

        The newest stored step's frame becomes the episode's final frame (its
        own transition, whose next observation is unknown, is dropped) and the
        step before it is marked truncated, so it bootstraps from that frame.
        The next ``add`` then starts a new episode.

        Returns:
            True if an open episode was closed, False if there was none.
        """
        with self._lock:
            if self._slots_written == 0:
                return False
            newest = (self._slots_written - 1) % self._capacity
            flags = int(self._flags[newest])
            if flags & (_EPISODE_END | FINAL_FRAME):
                return False
            if self._time_limit_cut == "drop":
                self._flags[newest] = flags | TRUNCATED
                self._drop_cut_tail()
                return True
            # The newest slot is never sampleable (n_step >= 1), so it holds no
            # priority in the sum tree and turning it into a final frame needs
            # no tree update.
            self._flags[newest] = FINAL_FRAME | (flags & EPISODE_START)
            self._final_frames_stored += 1
            if not flags & EPISODE_START:
                previous = (newest - 1) % self._capacity
                self._flags[previous] |= TRUNCATED
            return True

    def _drop_cut_tail(self):
        """Marks the newest episode's last n_step transitions as dropped.

        Their windows reach the time-limit cut, after which no frame is
        known. None of them is in the sum tree yet: a slot enters it only
        once n_step later slots exist.
        """
        for back in range(min(self._n_step, self._slots_written)):
            slot = (self._slots_written - 1 - back) % self._capacity
            flags = int(self._flags[slot])
            if not flags & _NOT_A_TRANSITION:
                self._flags[slot] = flags | CUT
                self._final_frames_stored += 1
            if flags & EPISODE_START:
                break

    def _next_add_starts_episode(self):
        if self._slots_written == 0:
            return True
        last = (self._slots_written - 1) % self._capacity
        return bool(self._flags[last] & (_EPISODE_END | FINAL_FRAME))

    def _write_slot(self, frame, action, reward, flags):
        slot = self._slots_written % self._capacity
        if self._slots_written >= self._capacity:
            if self._flags[slot] & _NOT_A_TRANSITION:
                self._final_frames_stored -= 1
            if self._sum_tree is not None and self._sum_tree.nodes[
                    self._capacity + slot] != 0.0:
                self._sum_tree.set_one(slot, 0.0)
        self._priority_at_write[self._slots_written % (self._n_step + 1)] = (
            self._max_priority)
        self._frames[slot] = frame
        self._actions[slot] = action
        self._rewards[slot] = reward
        self._flags[slot] = flags
        if flags & FINAL_FRAME:
            self._final_frames_stored += 1
        self._slots_written += 1
        if self._sum_tree is not None:
            self._refresh_tree_after_write()

    def _refresh_tree_after_write(self):
        """Keeps sum-tree leaves nonzero exactly on sampleable slots."""
        cap = self._capacity
        tree_nodes = self._sum_tree.nodes
        if self._slots_written > cap and self._stack_size > 1:
            oldest = self._slots_written % cap
            # On the first overwrite all stack_size - 1 oldest slots lose their
            # history at once; afterwards one more slot does per write.
            first = (0 if self._slots_written == cap + 1
                     else self._stack_size - 2)
            for offset in range(first, self._stack_size - 1):
                slot = (oldest + offset) % cap
                if tree_nodes[cap + slot] != 0.0:
                    self._sum_tree.set_one(slot, 0.0)
        ready = self._slots_written - 1 - self._n_step
        if ready >= 0:
            slot = ready % cap
            if not self._flags[slot] & _NOT_A_TRANSITION:
                self._sum_tree.set_one(
                    slot, self._priority_at_write[ready % (self._n_step + 1)])

    # ---------------------------------------------------------------- sampling

    def _sampleable_range(self):
        """(oldest slot, lo, hi): sampleable positions counted from oldest."""
        size = min(self._slots_written, self._capacity)
        overwritten = self._slots_written > self._capacity
        lo = self._stack_size - 1 if overwritten else 0
        hi = size - self._n_step
        oldest = (self._slots_written % self._capacity
                  if self._slots_written >= self._capacity else 0)
        return oldest, lo, max(hi, lo)

    def is_sampleable(self, indices):
        """Boolean mask: which slot ``indices`` could be sampled right now."""
        indices = self._check_indices(indices)
        with self._lock:
            oldest, lo, hi = self._sampleable_range()
            position = (indices - oldest) % self._capacity
            in_range = (position >= lo) & (position < hi)
            return in_range & ((self._flags[indices] & _NOT_A_TRANSITION)
                               == 0)

    def sample(self, batch_size):
        """Draws a batch of n-step transitions with rebuilt frame stacks.

        Args:
            batch_size: positive int.

        Returns:
            dict of NumPy arrays:
              state [B, *frame_shape, stack_size] frame_dtype (oldest frame
                first, newest last);
              action [B] int32;
              reward [B] float32, the n-step discounted reward sum;
              next_state [B, *frame_shape, stack_size] frame_dtype;
              discount [B] float32, ``gamma^n'`` or 0 after a terminal;
              terminal [B] bool, a terminal ended the window;
              indices [B] int64 slot indices (for ``update_priorities``);
              probabilities [B] float32, the probability of drawing each index
                (``1/num_sampleable`` when uniform);
              importance_weights [B] float32, max-normalised (all 1 when
                uniform).

        Raises:
            ValueError: if fewer than ``batch_size`` transitions are
                sampleable, or if all priorities are zero.
        """
        batch_size = _positive_int(batch_size, "batch_size")
        with self._lock:
            available = self.num_sampleable
            if available < batch_size:
                raise ValueError(
                    f"Cannot sample a batch of {batch_size}: have {available} "
                    f"sampleable transitions, need {batch_size} "
                    f"({self._num_added} added; the newest "
                    f"n_step={self._n_step} wait for their n-step window). "
                    f"Add more transitions first (see can_sample()).")
            if self._sum_tree is not None:
                total = self._sum_tree.total
                if not total > 0.0:
                    raise ValueError(
                        "Cannot sample: every sampleable transition has "
                        "priority 0. Pass positive priorities to "
                        "update_priorities().")
                indices = self._sum_tree.stratified_sample(batch_size,
                                                           self._rng)
                leaves = self._sum_tree.nodes[self._capacity + indices]
                probabilities = leaves / total
                weights = probabilities ** (-self._importance_exponent)
                weights /= weights.max()
            else:
                indices = self._uniform_indices(batch_size)
                probabilities = np.full(batch_size, 1.0 / available)
                weights = np.ones(batch_size)
            batch = self._gather(indices)
        batch["indices"] = indices.astype(np.int64)
        batch["probabilities"] = probabilities.astype(np.float32)
        batch["importance_weights"] = weights.astype(np.float32)
        return batch

    def get_transitions(self, indices):
        """The transitions at given sampleable slot ``indices`` (no sampling).

        Returns:
            dict with the keys of ``sample`` except probabilities and
            importance_weights.

        Raises:
            ValueError: if an index is not sampleable now.
        """
        indices = self._check_indices(indices)
        with self._lock:
            sampleable = self.is_sampleable(indices)
            if not sampleable.all():
                raise ValueError(
                    f"Slots {indices[~sampleable].tolist()} are not "
                    f"sampleable now (see is_sampleable()).")
            batch = self._gather(indices)
        batch["indices"] = indices
        return batch

    def _uniform_indices(self, batch_size):
        oldest, lo, hi = self._sampleable_range()
        positions = self._rng.integers(lo, hi, size=batch_size)
        indices = (oldest + positions) % self._capacity
        # Final-frame slots are rare (one per truncated episode), so redrawing
        # the few that land on one terminates quickly.
        rejected = (self._flags[indices] & _NOT_A_TRANSITION) != 0
        while rejected.any():
            count = int(np.count_nonzero(rejected))
            positions = self._rng.integers(lo, hi, size=count)
            indices[rejected] = (oldest + positions) % self._capacity
            rejected = (self._flags[indices] & _NOT_A_TRANSITION) != 0
        return indices.astype(np.int64)

    def _gather(self, indices):
        """n-step targets and both frame stacks for sampleable ``indices``."""
        batch_size = indices.shape[0]
        window = (indices[:, None] + self._window_offsets) % self._capacity
        window_flags = self._flags[window]
        ends = (window_flags & _EPISODE_END) != 0
        has_end = ends.any(axis=1)
        first_end = ends.argmax(axis=1)
        length = np.where(has_end, first_end + 1, self._n_step)
        in_window = self._window_offsets[None, :] < length[:, None]
        reward = np.sum(self._rewards[window].astype(np.float64)
                        * self._gamma_powers * in_window, axis=1)
        terminal = has_end & (
            (window_flags[np.arange(batch_size), first_end] & TERMINAL) != 0)
        discount = np.where(terminal, 0.0, self._gamma ** length)
        next_indices = (indices + length) % self._capacity
        stacks = self._stacks(np.concatenate([indices, next_indices]))
        return {
            "state": stacks[:batch_size],
            "action": self._actions[indices],
            "reward": reward.astype(np.float32),
            "next_state": stacks[batch_size:],
            "discount": discount.astype(np.float32),
            "terminal": terminal,
        }

    def _stacks(self, indices):
        """Frame stacks [M, *frame_shape, stack] ending at ``indices``."""
        # Gathered stack-position-major, [stack, M, *frame_shape], so that each
        # position is one contiguous plane for the interleaving below.
        slots = ((indices[None, :] + self._stack_offsets[:, None])
                 % self._capacity)
        planes = self._frames[slots]
        if self._stack_size > 1:
            starts = (self._flags[slots] & EPISODE_START) != 0
            # A frame belongs to the stack's episode unless an episode starts
            # at a later position of the stack.
            later_start = np.zeros_like(starts)
            later_start[:-1] = np.logical_or.accumulate(
                starts[:0:-1], axis=0)[::-1]
            planes[later_start] = 0
        return interleave_planes(planes)

    # -------------------------------------------------------------- priorities

    def update_priorities(self, indices, priorities):
        """Sets the priorities of sampled transitions.

        Stores ``priorities ** priority_exponent`` (Dopamine passes
        ``sqrt(loss + 1e-10)`` with exponent 1). Indices that stopped being
        sampleable since they were drawn (overwritten or now among the oldest
        stack_size - 1 slots, possible when the collector adds between the
        sampling and the update, as with the loop's ``overlap_updates``) are
        skipped, so the tree never gives weight to an unsampleable slot. An
        index overwritten *and* sampleable again (more than ``n_step`` adds
        between sampling and update, at the very oldest end of the buffer)
        cannot be told apart and receives the update; with a few batches in
        flight this touches a handful of transitions out of a million. With
        duplicate indices the last wins.

        Args:
            indices: int array-like [K] from ``sample()["indices"]``.
            priorities: float array-like [K], finite and >= 0.

        Returns:
            bool array [K]: which updates were applied.

        Raises:
            ValueError: if the buffer is not prioritized, or on bad indices
                or priorities.
        """
        if self._sum_tree is None:
            raise ValueError(
                "update_priorities() needs a buffer created with "
                "prioritized=True; this one samples uniformly.")
        indices = self._check_indices(indices)
        priorities = np.asarray(priorities, dtype=np.float64).reshape(-1)
        if priorities.shape != indices.shape:
            raise ValueError(
                f"update_priorities() got {indices.size} indices but "
                f"{priorities.size} priorities; pass one priority per index.")
        if priorities.size and not np.all(np.isfinite(priorities)):
            raise ValueError(
                "Priorities must be finite; got NaN or inf (check the loss "
                "that produced them).")
        if priorities.size and priorities.min() < 0.0:
            raise ValueError(
                f"Priorities must be >= 0, got a minimum of "
                f"{priorities.min()}.")
        values = priorities ** self._priority_exponent
        with self._lock:
            applied = self.is_sampleable(indices)
            if applied.any():
                self._sum_tree.set(indices[applied], values[applied])
                self._max_priority = max(self._max_priority,
                                         float(values[applied].max()))
        return applied

    def get_priorities(self, indices):
        """Stored priorities (after the exponent) of slot ``indices``."""
        if self._sum_tree is None:
            raise ValueError("get_priorities() needs prioritized=True.")
        indices = self._check_indices(indices)
        with self._lock:
            return self._sum_tree.get(indices)

    # ------------------------------------------------------------- checkpoints

    def _config(self):
        return {
            "capacity": self._capacity,
            "frame_shape": list(self._frame_shape),
            "stack_size": self._stack_size,
            "n_step": self._n_step,
            "gamma": self._gamma,
            "prioritized": self._prioritized,
            "priority_exponent": self._priority_exponent,
            "importance_exponent": self._importance_exponent,
            "frame_dtype": self._frame_dtype.str,
            "time_limit_cut": self._time_limit_cut,
        }

    def _counters(self):
        return {
            "slots_written": self._slots_written,
            "num_added": self._num_added,
            "final_frames_stored": self._final_frames_stored,
            "max_priority": self._max_priority,
            "priority_at_write": self._priority_at_write.tolist(),
        }

    def _array_views(self):
        """The written part of every array, as views (no copy)."""
        size = min(self._slots_written, self._capacity)
        arrays = {
            "frames": self._frames[:size],
            "actions": self._actions[:size],
            "rewards": self._rewards[:size],
            "flags": self._flags[:size],
        }
        if self._sum_tree is not None:
            arrays["sum_tree"] = self._sum_tree.nodes
        return arrays

    def state_dict(self, copy=True):
        """Everything needed to resume: config, arrays, counters, RNG state.

        Only the written slots of the per-slot arrays are included.

        Args:
            copy: copy the arrays (True) or return views of the live storage
                (False; cheaper at 1 M, but they change with the next add).

        Returns:
            dict with keys format_version, config, counters, rng_state, arrays.
        """
        with self._lock:
            arrays = self._array_views()
            if copy:
                arrays = {name: array.copy() for name, array in arrays.items()}
            return {
                "format_version": persistence.FORMAT_VERSION,
                "config": self._config(),
                "counters": self._counters(),
                "rng_state": _copy_rng_state(self._rng.bit_generator.state),
                "arrays": arrays,
            }

    def load_state_dict(self, state):
        """Restores ``state_dict()`` output into this buffer.

        Raises:
            ValueError: if the state has another format version, was saved
                with other settings or its arrays have the wrong shapes or
                dtypes.
        """
        state = persistence.upgrade(state)
        mismatched = []
        mine = self._config()
        for key, value in mine.items():
            theirs = state["config"].get(key)
            if key == "frame_shape":
                theirs = list(theirs) if theirs is not None else None
            if theirs != value:
                mismatched.append(f"{key}: saved {theirs!r}, buffer {value!r}")
        if mismatched:
            raise ValueError(
                "Replay state does not match this buffer's settings ("
                + "; ".join(mismatched) + "). Create the buffer with the "
                "saved settings, e.g. with FrameReplayBuffer.load(directory).")
        counters = state["counters"]
        slots_written = int(counters["slots_written"])
        size = min(slots_written, self._capacity)
        expected = self.array_layout(self._capacity, self._frame_shape,
                                     self._frame_dtype, self._prioritized)
        arrays = state["arrays"]
        for name, (shape, dtype) in expected.items():
            if name not in arrays:
                raise ValueError(f"Replay state lacks the array {name!r}.")
            want = shape if name == "sum_tree" else (size,) + shape[1:]
            got = arrays[name]
            if tuple(got.shape) != tuple(want) or np.dtype(got.dtype) != dtype:
                raise ValueError(
                    f"Replay state array {name!r} has shape "
                    f"{tuple(got.shape)} and dtype {got.dtype}; expected "
                    f"{tuple(want)} and {dtype}.")
        with self._lock:
            old_size = min(self._slots_written, self._capacity)
            for name, target in (("frames", self._frames),
                                 ("actions", self._actions),
                                 ("rewards", self._rewards),
                                 ("flags", self._flags)):
                target[:size] = arrays[name]
                if old_size > size:
                    # Only slots this buffer already wrote are reset; untouched
                    # pages of a fresh buffer stay unallocated.
                    target[size:old_size] = 0
            if self._sum_tree is not None:
                self._sum_tree.load_nodes(arrays["sum_tree"])
            self._slots_written = slots_written
            self._num_added = int(counters["num_added"])
            self._final_frames_stored = int(counters["final_frames_stored"])
            self._max_priority = float(counters["max_priority"])
            self._priority_at_write[:] = counters["priority_at_write"]
            self._rng.bit_generator.state = _copy_rng_state(state["rng_state"])

    def save(self, directory):
        """Writes the buffer to ``directory`` as .npy files plus a manifest.

        The format and the crash safety (a reader always finds a complete
        generation of files) are described in ``persistence``.

        Args:
            directory: folder to write into (created if missing).

        Returns:
            the manifest path.
        """
        with self._lock:
            return persistence.write(directory, self.state_dict(copy=False))

    def restore(self, directory):
        """Loads what ``save(directory)`` wrote into this buffer."""
        self.load_state_dict(persistence.read(directory))

    @classmethod
    def load(cls, directory):
        """A new buffer built with the saved settings and contents."""
        state = persistence.read(directory)
        buffer = cls(**persistence.constructor_args(state["config"]))
        buffer.load_state_dict(state)
        return buffer

    # ----------------------------------------------------------------- checks

    def _check_frame(self, frame, name):
        array = np.asarray(frame)
        if (array.shape != self._frame_shape
                or array.dtype != self._frame_dtype):
            raise ValueError(
                f"{name} has shape {array.shape} and dtype {array.dtype}, but "
                f"this buffer stores single frames of shape "
                f"{self._frame_shape} and dtype {self._frame_dtype}. Pass "
                f"the newest frame of the observation (not the whole stack), "
                f"converted to that dtype.")
        return array

    def _check_indices(self, indices):
        return check_indices(
            indices, self._capacity, "indices (from sample()['indices'])")


def interleave_planes(planes, use_opencv=None):
    """Moves the leading axis last: [S, M, *shape] -> [M, *shape, S].

    NumPy's generic transposed copy of small-stride uint8 data is slow (about
    12 ms for a 32-sample Atari batch of states and next states), so where
    OpenCV is installed and supports the dtype its SIMD channel merge does the
    interleaving (about 0.4 ms); otherwise one strided NumPy copy per stack
    position runs (a few ms). Both give identical arrays.

    Args:
        planes: array [S, M, *shape] with S >= 1.
        use_opencv: force (True) or forbid (False) the OpenCV path; None picks
            it when available.

    Returns:
        a new C-contiguous array [M, *shape, S].
    """
    planes = np.ascontiguousarray(planes)
    depth, count = planes.shape[0], planes.shape[1]
    shape = planes.shape[2:]
    if depth == 1:
        return planes[0][..., None].copy()
    if use_opencv is None:
        rows = count * int(np.prod(shape[:-1], dtype=np.int64))
        use_opencv = (_cv2() is not None and planes.dtype in _OPENCV_DTYPES
                      and depth <= 512 and len(shape) >= 1 and rows < 2 ** 31)
    if use_opencv:
        cv2 = _cv2()
        rows = [plane.reshape(-1, shape[-1]) for plane in planes]
        return cv2.merge(rows).reshape((count,) + shape + (depth,))
    out = np.empty((count,) + shape + (depth,), dtype=planes.dtype)
    for position in range(depth):
        out[..., position] = planes[position]
    return out


_OPENCV_DTYPES = tuple(np.dtype(d) for d in (np.uint8, np.int8, np.uint16,
                                              np.int16, np.int32, np.float32,
                                              np.float64))
_CV2_MODULE = []


def _cv2():
    """The cv2 module, or None when OpenCV is not installed (imported once)."""
    if not _CV2_MODULE:
        try:
            import cv2  # pylint: disable=g-import-not-at-top
        except ImportError:
            cv2 = None
        _CV2_MODULE.append(cv2)
    return _CV2_MODULE[0]


def _positive_int(value, name):
    try:
        integer = operator.index(value)
    except TypeError:
        raise ValueError(
            f"{name} must be a positive integer, got {value!r}.") from None
    if integer < 1:
        raise ValueError(f"{name} must be a positive integer, got {integer}.")
    return int(integer)


def _non_negative(value, name):
    value = float(value)
    if not (np.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {value}.")
    return value


def _frame_shape(shape):
    try:
        shape = tuple(operator.index(d) for d in shape)
    except TypeError:
        raise ValueError(
            f"frame_shape must be a tuple of positive ints such as (84, 84), "
            f"got {shape!r}.") from None
    if not shape or min(shape) < 1:
        raise ValueError(
            f"frame_shape must be a non-empty tuple of positive ints, got "
            f"{shape}.")
    return shape


def _check_action(action):
    # Fast path for the common case of a plain Python int.
    if type(action) is int and _INT32.min <= action <= _INT32.max:
        return action
    array = np.asarray(action)
    if array.ndim != 0 or not (np.issubdtype(array.dtype, np.integer)
                               and array.dtype != np.bool_):
        raise ValueError(
            f"action must be a scalar integer, got {action!r} (dtype "
            f"{array.dtype}, shape {array.shape}).")
    value = int(array)
    if not _INT32.min <= value <= _INT32.max:
        raise ValueError(
            f"action {value} does not fit the int32 action storage.")
    return value


def _copy_rng_state(state):
    """A deep copy of a bit-generator state dict (nested dicts of ints)."""
    return json.loads(json.dumps(state))


