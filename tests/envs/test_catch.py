"""Tests of the Catch environment."""

import numpy as np
import pytest
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from tf_softmoe.envs import CatchEnv
from tf_softmoe.envs.catch import BALL_VALUE
from tf_softmoe.envs.catch import PADDLE_VALUE


def _columns_seen(frame, env):
    """Ball and paddle grid columns decoded from an (upscaled) image."""
    factor = frame.shape[1] // env.columns
    left = (frame.shape[1] - factor * env.columns) // 2
    ball = np.argwhere(frame == BALL_VALUE)[:, 1].min()
    paddle = np.argwhere(frame == PADDLE_VALUE)[:, 1].min()
    return (ball - left) // factor, (paddle - left) // factor


def _optimal_action(observation, env):
    ball, paddle = _columns_seen(observation[..., -1], env)
    return 1 + int(np.sign(ball - paddle))


def _play(env, policy, episodes):
    returns = []
    step = env.reset()
    for _ in range(episodes):
        total = 0.0
        while True:
            step = env.step(policy(step.observation))
            total += float(step.reward)
            if step.is_last():
                break
        returns.append(total)
        step = env.step(0)
        assert step.step_type == ts.StepType.FIRST
    return np.array(returns)


@pytest.mark.parametrize("kwargs,shape", [
    ({}, (10, 5, 1)),
    ({"observation_shape": (84, 84, 4)}, (84, 84, 4)),
    ({"observation_shape": (20, 10), "stack_size": 2}, (20, 10, 2)),
    ({"rows": 6, "columns": 3, "stack_size": 3}, (6, 3, 3)),
])
def test_shapes_specs_and_episode_structure(kwargs, shape):
    env = CatchEnv(seed=0, **kwargs)
    assert env.observation_spec().shape == shape
    assert env.observation_spec().dtype == np.uint8
    assert env.action_spec().dtype == np.int64
    assert (env.action_spec().minimum, env.action_spec().maximum) == (0, 2)
    first = env.reset()
    array_spec.check_arrays_nest(first, env.time_step_spec())
    assert not first.observation[..., :-1].any()
    assert (first.observation[..., -1] == BALL_VALUE).any()
    assert (first.observation[..., -1] == PADDLE_VALUE).any()
    steps = []
    while not (steps and steps[-1].is_last()):
        steps.append(env.step(1))
        array_spec.check_arrays_nest(steps[-1], env.time_step_spec())
    assert len(steps) == env.rows - 1
    assert all(s.reward == 0.0 and s.discount == 1.0 for s in steps[:-1])
    assert steps[-1].reward in (-1.0, 1.0) and steps[-1].discount == 0.0
    assert env.get_info()["episode_ended"]
    assert env.get_info()["episode_length"] == env.rows - 1
    np.testing.assert_array_equal(steps[1].observation[..., :-1],
                                  steps[0].observation[..., 1:])


def test_upscaling_is_an_integer_block_copy_centred():
    env = CatchEnv(rows=10, columns=5, observation_shape=(84, 84), seed=1)
    frame = env.reset().observation[..., -1]
    row, column = env.ball_position
    # 84 // 10 = 8 rows per cell with a 2-pixel margin; 84 // 5 = 16 columns
    # per cell with a 2-pixel margin.
    block = frame[2 + 8 * row:2 + 8 * (row + 1),
                  2 + 16 * column:2 + 16 * (column + 1)]
    assert (block == BALL_VALUE).all()
    assert (frame == BALL_VALUE).sum() == 8 * 16
    assert not frame[:2].any() and not frame[-2:].any()


def test_optimal_policy_always_catches_and_random_does_worse():
    env = CatchEnv(observation_shape=(84, 84, 4), seed=3)
    optimal = _play(env, lambda obs: _optimal_action(obs, env), episodes=40)
    assert (optimal == 1.0).all()
    rng = np.random.default_rng(0)
    random = _play(CatchEnv(seed=3), lambda obs: rng.integers(3), 200)
    assert random.mean() < 0.5
    assert set(np.unique(random)) == {-1.0, 1.0}


def test_seeded_ball_columns():
    def columns(seed):
        env = CatchEnv(seed=seed)
        result = []
        for _ in range(30):
            env.reset()
            result.append(env.ball_position[1])
        return result

    assert columns(5) == columns(5)
    assert columns(5) != columns(6)
    assert set(columns(5)) == set(range(5))


def test_paddle_is_clamped():
    env = CatchEnv(seed=0)
    env.reset()
    for _ in range(4):
        env.step(0)
    assert env.paddle_column == 0


@pytest.mark.parametrize("kwargs,match", [
    ({"rows": 1}, "rows"),
    ({"columns": 0}, "columns"),
    ({"rows": 3, "columns": 6}, "too wide"),
    ({"observation_shape": (5, 5)}, r"observation_shape\[0\]"),
    ({"observation_shape": (84,)}, "observation_shape"),
    ({"observation_shape": (84, 84, 4), "stack_size": 2}, "disagrees"),
    ({"stack_size": 0}, "stack_size"),
    ({"seed": -3}, "seed"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CatchEnv(**kwargs)


def test_invalid_action():
    env = CatchEnv(seed=0)
    env.reset()
    with pytest.raises(ValueError, match="action"):
        env.step(3)
