"""The benchmarks' bulk fill of a FrameReplayBuffer equals adding step by step."""

import numpy as np
import pytest

from benchmarks.replay_fill import fill_with_synthetic_episodes
from benchmarks.replay_fill import synthetic_transitions
from tf_softmoe.replay import FrameReplayBuffer


# 30: not yet full; 50: exactly full; 137: wrapped around more than twice.
@pytest.mark.parametrize("num_transitions", [30, 50, 137])
@pytest.mark.parametrize("prioritized", [False, True])
def test_fill_equals_adding_one_by_one(prioritized, num_transitions):
    def make():
        return FrameReplayBuffer(50, frame_shape=(5, 6), stack_size=4,
                                 n_step=3, prioritized=prioritized, seed=1)

    bulk, stepwise = make(), make()
    fill_with_synthetic_episodes(bulk, num_transitions, episode_length=9,
                                 seed=4)
    frames, actions, rewards, terminals = synthetic_transitions(
        0, num_transitions, (5, 6), np.uint8, episode_length=9, seed=4)
    for k in range(num_transitions):
        stepwise.add(frames[k], actions[k], rewards[k], terminals[k])
    want, got = stepwise.state_dict(), bulk.state_dict()
    assert want["counters"] == got["counters"]
    assert want["rng_state"] == got["rng_state"]
    for key in want["arrays"]:
        np.testing.assert_array_equal(want["arrays"][key], got["arrays"][key],
                                      err_msg=key)
    want, got = stepwise.sample(16), bulk.sample(16)
    for key in want:
        np.testing.assert_array_equal(want[key], got[key], err_msg=key)


def test_fill_refuses_a_buffer_that_holds_transitions():
    buffer = FrameReplayBuffer(50, frame_shape=(5, 6))
    buffer.add(np.zeros((5, 6), np.uint8), 0, 0.0, terminal=False)
    with pytest.raises(ValueError, match="needs an empty buffer"):
        fill_with_synthetic_episodes(buffer, 10)
