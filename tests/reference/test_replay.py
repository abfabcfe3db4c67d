"""FrameReplayBuffer against Dopamine's OutOfGraphPrioritizedReplayBuffer.

The labs/moes configs (DER.gin, full_rainbow.gin, dqn.gin) bind
`OutOfGraph(Prioritized)ReplayBuffer`, the circular buffer with sampling-time
stacks and n-step sums (in 4.1.2 under dopamine/tf/replay_memory). The JAX
agents of 4.1.2 build a newer accumulator-based buffer instead, which those
configs do not configure (they bind no `ReplayBuffer.max_capacity`); it was
added after the moes code, so the papers' numbers come from the circular one
(docs/agents.md, "Replay").

The same scripted episodes (terminal ends, time-limit cuts, episodes shorter
than the stack and than n) go into both buffers; every stored transition is
then fetched by index from both and compared field by field.
"""

import numpy as np
import pytest

from tf_softmoe.replay import FrameReplayBuffer

STACK = 4
GAMMA = 0.9
FRAME_SHAPE = (3, 3)
# (length, ends in a terminal); the others end at a time-limit cut. No cut
# lies within 10 slots after a terminal: Dopamine then also rejects windows
# that stop at the terminal (it scans all n slots for a cut, reaching into
# the next episode), an artefact not reproduced (docs/agents.md, "Replay").
EPISODES = ((7, True), (2, True), (12, False), (3, False), (5, True),
            (1, True), (14, False), (15, True))
HORIZONS = (1, 3, 10)

# Runs in the reference venv. Its TensorFlow cannot be imported next to JAX's
# protobufs there, and the buffers use it only to write checkpoints, so a
# stand-in module is installed first.
_REFERENCE_SCRIPT = """
import sys, types
sys.modules.setdefault("tensorflow", types.ModuleType("tensorflow"))
from dopamine.tf.replay_memory import prioritized_replay_buffer as prb

frames, actions, rewards = inputs["frames"], inputs["actions"], inputs["rewards"]
terminals, ends = inputs["terminals"], inputs["ends"]
for n in inputs["horizons"]:
    n = int(n)
    buffer = prb.OutOfGraphPrioritizedReplayBuffer(
        observation_shape=tuple(frames.shape[1:]), stack_size=int(inputs["stack"]),
        replay_capacity=1000, batch_size=1, update_horizon=n,
        gamma=float(inputs["gamma"]))
    slots = []
    for t in range(len(frames)):
        # What the full Rainbow agent passes: the largest priority so far.
        buffer.add(frames[t], int(actions[t]), float(rewards[t]),
                   int(terminals[t]), priority=buffer.sum_tree.max_recorded_priority,
                   episode_end=bool(ends[t]))
        slots.append(buffer.cursor() - 1)
    slots = np.array(slots, np.int32)
    valid = np.array([buffer.is_valid_transition(s) for s in slots])
    batch = buffer.sample_transition_batch(int(valid.sum()), indices=slots[valid])
    names = [e.name for e in buffer.get_transition_elements(int(valid.sum()))]
    for name in ("state", "action", "reward", "next_state", "terminal",
                 "sampling_probabilities"):
        outputs[f"{name}_{n}"] = batch[names.index(name)]
    outputs[f"valid_{n}"] = valid
    # Priority semantics: set some, then new transitions enter at the max.
    chosen = slots[valid][::2]
    buffer.set_priority(chosen, inputs["priorities"][:len(chosen)])
    new_slots = []
    for t in range(int(inputs["extra"])):
        buffer.add(frames[t], 0, 0.0, 0, priority=buffer.sum_tree.max_recorded_priority)
        new_slots.append(buffer.cursor() - 1)
    outputs[f"priorities_{n}"] = buffer.get_priority(slots[valid])
    outputs[f"new_priorities_{n}"] = buffer.get_priority(np.array(new_slots, np.int32))
    # Every transition, old and new, that can be drawn now, and its priority.
    every = np.concatenate([slots, np.array(new_slots, np.int32)])
    valid_now = np.array([buffer.is_valid_transition(s) for s in every])
    outputs[f"valid_now_{n}"] = valid_now
    outputs[f"priorities_now_{n}"] = buffer.get_priority(every[valid_now])
"""

_EXTRA_ADDS = 4


def _script():
    """Frames, actions, rewards and episode-end flags of the episodes."""
    rng = np.random.default_rng(12)
    total = sum(length for length, _ in EPISODES)
    frames = rng.integers(1, 256, size=(total,) + FRAME_SHAPE).astype(np.uint8)
    actions = rng.integers(0, 18, size=total).astype(np.int32)
    # Distinct non-integer rewards, so a reward summed over the wrong window
    # or with the wrong discount power cannot agree by chance.
    rewards = rng.uniform(-1.0, 1.0, size=total).astype(np.float32)
    terminals = np.zeros(total, bool)
    ends = np.zeros(total, bool)
    start = 0
    for length, terminal in EPISODES:
        ends[start + length - 1] = True
        terminals[start + length - 1] = terminal
        start += length
    return frames, actions, rewards, terminals, ends


@pytest.fixture(scope="module")
def compared(reference):
    frames, actions, rewards, terminals, ends = _script()
    priorities = np.linspace(0.2, 3.0, 40).astype(np.float32)
    theirs = reference(
        _REFERENCE_SCRIPT, frames=frames, actions=actions, rewards=rewards,
        terminals=terminals, ends=ends, horizons=np.array(HORIZONS),
        stack=np.array(STACK), gamma=np.array(GAMMA), priorities=priorities,
        extra=np.array(_EXTRA_ADDS))
    ours = {}
    for n in HORIZONS:
        buffer = FrameReplayBuffer(1000, frame_shape=FRAME_SHAPE, stack_size=STACK,
                                   n_step=n, gamma=GAMMA, prioritized=True, seed=0)
        slots = []
        for t in range(len(frames)):
            cut = bool(ends[t] and not terminals[t])
            buffer.add(frames[t], int(actions[t]), float(rewards[t]),
                       bool(terminals[t]), truncated=cut,
                       next_frame=frames[t] if cut else None)
            # "drop" writes no final-frame slots: one slot per add.
            slots.append(buffer.num_added - 1)
        ours[n] = (buffer, np.array(slots))
    return theirs, ours, priorities


def _apply_priority_updates(compared, n, _done={}):  # pylint: disable=dangerous-default-value
    """Does to ours what the reference script did after sampling (once).

    Returns:
      (buffer, {slot: the reference's priority} for every sampleable slot).
    """
    theirs, ours, priorities = compared
    buffer, slots = ours[n]
    if n not in _done:
        chosen = slots[theirs[f"valid_{n}"]][::2]
        buffer.update_priorities(chosen, priorities[:len(chosen)])
        frames, *_ = _script()
        new_slots = []
        for t in range(_EXTRA_ADDS):
            buffer.add(frames[t], 0, 0.0, False)
            new_slots.append(buffer.num_added - 1)
        every = np.concatenate([slots, new_slots])
        reference_priorities = dict(zip(
            every[theirs[f"valid_now_{n}"]].tolist(),
            theirs[f"priorities_now_{n}"].tolist()))
        _done[n] = (buffer, reference_priorities)
    return _done[n]


@pytest.mark.parametrize("n", HORIZONS)
def test_the_same_transitions_are_sampleable(compared, n):
    theirs, ours, _ = compared
    buffer, slots = ours[n]
    np.testing.assert_array_equal(buffer.is_sampleable(slots), theirs[f"valid_{n}"])
    # Episode-end windows and cut tails must be exercised for this to mean much.
    assert 0 < theirs[f"valid_{n}"].sum() < len(slots)


@pytest.mark.parametrize("n", HORIZONS)
def test_stacks_returns_discounts_and_terminals_agree(compared, n):
    theirs, ours, _ = compared
    buffer, slots = ours[n]
    batch = buffer.get_transitions(slots[theirs[f"valid_{n}"]])
    np.testing.assert_array_equal(batch["state"], theirs[f"state_{n}"])
    np.testing.assert_array_equal(batch["action"], theirs[f"action_{n}"])
    np.testing.assert_allclose(batch["reward"], theirs[f"reward_{n}"],
                               rtol=1e-6, atol=1e-6)
    terminal = theirs[f"terminal_{n}"].astype(bool)
    np.testing.assert_array_equal(batch["terminal"], terminal)
    # Dopamine's agents discount by the constant cumulative_gamma = gamma^n.
    np.testing.assert_allclose(batch["discount"],
                               np.where(terminal, 0.0, GAMMA ** n), rtol=1e-6)
    # After a terminal Dopamine's next state is undefined (it reads the next
    # episode's padding); both are multiplied by a zero discount.
    np.testing.assert_array_equal(batch["next_state"][~terminal],
                                  theirs[f"next_state_{n}"][~terminal])
    assert terminal.any() and (~terminal).any()


def test_episode_starts_are_zero_padded_as_in_dopamine(compared):
    theirs, ours, _ = compared
    buffer, slots = ours[1]
    first_of_short_episode = slots[7]  # the 2-step episode: [0, 0, 0, f]
    state = buffer.get_transitions(np.array([first_of_short_episode]))["state"][0]
    assert not state[..., :STACK - 1].any() and state[..., -1].all()
    index = int(np.flatnonzero(buffer.is_sampleable(slots)).tolist().index(7))
    np.testing.assert_array_equal(state, theirs["state_1"][index])


@pytest.mark.parametrize("n", HORIZONS)
def test_priorities_and_importance_weights_agree(compared, n):
    theirs, ours, priorities = compared
    buffer, slots = ours[n]
    valid = slots[theirs[f"valid_{n}"]]
    # Both give new transitions the largest priority recorded so far (1.0).
    np.testing.assert_allclose(buffer.get_priorities(valid),
                               theirs[f"sampling_probabilities_{n}"])
    chosen = valid[::2]
    _, by_slot = _apply_priority_updates(compared, n)
    sampleable = np.flatnonzero(buffer.is_sampleable(np.arange(buffer.capacity)))
    # Dopamine writes stack_size - 1 zero slots before each episode, and they
    # count towards the n slots a transition waits for: right after a new
    # episode starts it may draw a few of the newest transitions earlier.
    early = set(by_slot) - set(sampleable.tolist())
    assert set(sampleable.tolist()) <= set(by_slot)
    assert all(s >= buffer.num_added - n - STACK for s in early)
    np.testing.assert_allclose(buffer.get_priorities(valid),
                               theirs[f"priorities_{n}"], rtol=1e-6)
    # Dopamine's extra transitions enter the tree at once (ours when their
    # window exists): both at the largest priority set so far.
    np.testing.assert_allclose(theirs[f"new_priorities_{n}"],
                               priorities[:len(chosen)].max(), rtol=1e-6)
    # Transitions added before the update but sampleable only after it keep
    # the max of their add: compare every sampleable one.
    np.testing.assert_allclose(buffer.get_priorities(sampleable),
                               [by_slot[s] for s in sampleable.tolist()], rtol=1e-6)
    assert buffer.max_priority == pytest.approx(float(priorities[:len(chosen)].max()))
    # Importance weights: the agent's 1/sqrt(p + 1e-10) / max over the batch
    # (Dopamine passes raw priorities; the normalisation cancels the total).
    batch = buffer.sample(16)
    raw = np.array([by_slot[i] for i in batch["indices"].tolist()])
    expected = 1.0 / np.sqrt(raw + 1e-10)
    np.testing.assert_allclose(batch["importance_weights"],
                               expected / expected.max(), rtol=1e-5)
    total = sum(by_slot[s] for s in sampleable.tolist())
    np.testing.assert_allclose(batch["probabilities"], raw / total, rtol=1e-5)


def test_sampling_frequencies_follow_the_reference_priorities(compared):
    theirs, ours, _ = compared
    buffer, by_slot = _apply_priority_updates(compared, 3)
    valid = np.flatnonzero(buffer.is_sampleable(np.arange(buffer.capacity)))
    expected = np.array([by_slot[s] for s in valid])
    expected /= expected.sum()
    draws = np.concatenate([buffer.sample(32)["indices"] for _ in range(400)])
    counts = np.array([np.count_nonzero(draws == s) for s in valid])
    assert counts.sum() == draws.size
    chi2 = np.sum((counts - draws.size * expected) ** 2 / (draws.size * expected))
    # The chi-square distribution's 0.999 quantile (Wilson-Hilferty).
    dof = len(valid) - 1
    quantile = dof * (1 - 2 / (9 * dof) + 3.09 * np.sqrt(2 / (9 * dof))) ** 3
    assert chi2 < quantile
