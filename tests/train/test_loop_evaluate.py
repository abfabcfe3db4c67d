"""`loop.evaluate` in several environments at once: the games counted are
the ones each environment plays alone, batched policy calls, seeds."""

import numpy as np
import pytest
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from tests.agents.catch_setup import catch, fast_setup
from tf_softmoe import agents
from tf_softmoe.train import loop


class DiceEnv(py_environment.PyEnvironment):
    """Games of 1-12 steps (drawn from the seed); the reward of a step is
    the action + 1, and the observation says how many steps are left."""

    def __init__(self, seed):
        super().__init__(handle_auto_reset=False)
        self._rng = np.random.default_rng(seed)
        self._left = 0

    def observation_spec(self):
        return array_spec.ArraySpec((2,), np.int64, "observation")

    def action_spec(self):
        return array_spec.BoundedArraySpec((), np.int64, 0, 1, "action")

    def seed(self, seed):
        self._rng = np.random.default_rng(seed)

    def _observation(self):
        return np.array([self._left, self._left % 3], np.int64)

    def _reset(self):
        self._left = int(self._rng.integers(1, 13))
        return ts.restart(self._observation())

    def _step(self, action):
        self._left -= 1
        reward = np.float32(int(action) + 1)
        if self._left == 0:
            return ts.termination(self._observation(), reward)
        return ts.transition(self._observation(), reward)


class ParityPolicy:
    """Deterministic batched actions; records the batch sizes it saw."""

    def __init__(self):
        self.batches = []

    def actions(self, time_steps, max_batch_size=None):
        self.batches.append((len(time_steps.observation), max_batch_size))
        return time_steps.observation[:, 0] % 2


def play_alone(seeds, quotas):
    """Each environment's games played one after another, on its own."""
    games = []
    for seed, quota in zip(seeds, quotas):
        if quota:
            returns, lengths = loop.evaluate(DiceEnv(seed), ParityPolicy(), quota)
            games += list(zip(returns, lengths))
    return sorted(games)


def test_parallel_games_are_the_games_each_environment_plays_alone():
    seeds = loop.environment_seeds(7, 3)
    policy = ParityPolicy()
    returns, lengths = loop.evaluate([DiceEnv(s) for s in seeds], policy, 8)
    # 8 games over 3 environments: 3, 3 and 2, whatever their lengths.
    assert sorted(zip(returns, lengths)) == play_alone(seeds, [3, 3, 2])
    assert len(set(lengths)) > 1  # the games differ in length
    # One batched call per step for the environments still playing.
    sizes = [rows for rows, _ in policy.batches]
    assert sizes[0] == 3 and sizes == sorted(sizes, reverse=True) and sizes[-1] == 1
    assert {limit for _, limit in policy.batches} == {3}


def test_short_games_are_not_favoured():
    # The environment with the short games finishes its share and stops: it
    # does not play the long environment's games.
    class Fixed(DiceEnv):
        def __init__(self, length):
            super().__init__(0)
            self.length = length

        def _reset(self):
            self._left = self.length
            return ts.restart(self._observation())

    returns, lengths = loop.evaluate([Fixed(12), Fixed(1)], ParityPolicy(), 4)
    assert sorted(lengths) == [1, 1, 12, 12]
    assert len(returns) == 4


def test_more_environments_than_games_uses_as_many_as_games():
    seeds = loop.environment_seeds(3, 5)
    policy = ParityPolicy()
    returns, _ = loop.evaluate([DiceEnv(s) for s in seeds], policy, 2)
    assert len(returns) == 2 and policy.batches[0] == (2, 2)


def test_a_plain_callable_is_called_once_per_environment():
    seeds = loop.environment_seeds(11, 2)
    calls = []

    def act(time_step):
        calls.append(time_step)
        return int(time_step.observation[0] % 2)

    returns, lengths = loop.evaluate([DiceEnv(s) for s in seeds], act, 4)
    assert sorted(zip(returns, lengths)) == play_alone(seeds, [2, 2])
    assert len(calls) == sum(lengths)


def test_caps_stops_and_callbacks_count_every_environment():
    envs = [DiceEnv(s) for s in loop.environment_seeds(5, 4)]
    capped = []
    _, lengths = loop.evaluate(envs, ParityPolicy(), 100, max_steps=10,
                               on_step=lambda env, step: capped.append(env))
    # 10 agent steps in all, shared by the 4 environments (3, 3, 2, 2).
    assert len(capped) == 10 and [capped.count(env) for env in envs] == [3, 3, 2, 2]
    assert all(length <= 3 for length in lengths)
    envs = [DiceEnv(s) for s in loop.environment_seeds(5, 4)]
    seen, stepped = [], []
    steps = {"n": 0}

    def stop():
        steps["n"] += 1
        return steps["n"] > 30

    returns, _ = loop.evaluate(envs, ParityPolicy(), 100, should_stop=stop,
                               on_episode=lambda r, l, s: seen.append((len(r), s)),
                               on_step=lambda env, step: stepped.append(env))
    assert len(stepped) == 30 and set(stepped) <= set(envs) and len(set(stepped)) == 4
    assert [count for count, _ in seen] == list(range(1, len(returns) + 1))
    assert all(step <= 30 for _, step in seen)
    with pytest.raises(ValueError, match="at least one environment"):
        loop.evaluate([], ParityPolicy(), 1)
    with pytest.raises(ValueError, match="num_episodes must be >= 1"):
        loop.evaluate(DiceEnv(0), ParityPolicy(), 0)


def test_environment_seeds():
    assert loop.environment_seeds(42, 1) == [42]
    seeds = loop.environment_seeds(42, 100)
    assert seeds[0] == 42 and len(set(seeds)) == 100
    assert seeds == loop.environment_seeds(42, 100)
    assert seeds[1:] != loop.environment_seeds(43, 100)[1:]
    assert all(isinstance(s, int) and s >= 0 for s in seeds)


def test_batch_sizes():
    assert loop.batch_sizes(1) == [1]
    assert loop.batch_sizes(8) == [1, 2, 4, 8]
    assert loop.batch_sizes(100) == [1, 2, 4, 8, 16, 32, 64, 100]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiled_policy_acts_on_batches_as_on_single_steps(jit_compile):
    env = catch(0)
    agent = agents.make_agent(*fast_setup("dqn"), env.time_step_spec(), env.action_spec())
    policy = loop.CompiledPolicy(agent.policy, jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    step = env.reset()
    steps = [step._replace(observation=rng.integers(0, 256, step.observation.shape,
                                                    dtype=np.uint8)) for _ in range(5)]
    single = [policy.action(s) for s in steps]
    batch = ts.TimeStep(*(np.stack(field) for field in zip(*steps)))
    # 5 rows padded to 8 of batch_sizes(8); the padding's actions are dropped.
    assert policy.actions(batch, max_batch_size=8).tolist() == single
    assert policy.actions(batch).tolist() == single  # traced for exactly 5
    assert sorted(policy._callers) == [1, 5, 8]  # pylint: disable=protected-access
    with pytest.raises(ValueError, match="a batch of 5 time steps; expected 1 to 4"):
        policy.actions(batch, max_batch_size=4)
    with pytest.raises(ValueError, match=r"time_steps.observation has shape \(5, 6, 12, 1\)"):
        policy.actions(batch._replace(observation=np.zeros((5, 6, 12, 1), np.uint8)))


def test_a_tf_agents_policy_plays_catch_in_parallel_as_alone():
    # The greedy DQN policy is deterministic: three Catch environments at
    # once play the games each plays alone.
    env = catch(0)
    agent = agents.make_agent(*fast_setup("dqn"), env.time_step_spec(), env.action_spec())
    seeds = loop.environment_seeds(9, 3)
    together = loop.evaluate([catch(s) for s in seeds], agent.policy, 6)
    alone = [loop.evaluate(catch(s), agent.policy, 2) for s in seeds]
    assert sorted(together[0]) == sorted(r for returns, _ in alone for r in returns)
    assert len(together[1]) == 6
