"""The acting policy: `resolve_policy_jit_compile` and `CompiledPolicy`
(graph or XLA, one time step per call, flat-tensor calls)."""

import re

import numpy as np
import pytest
import tensorflow as tf

from tests.agents.catch_setup import catch, fast_setup
from tf_softmoe import agents
from tf_softmoe.networks import NetworkConfig
from tf_softmoe.train import config as config_lib
from tf_softmoe.train import flat_call
from tf_softmoe.train import learner as learner_lib
from tf_softmoe.train import loop
from tf_softmoe.train import resolve_policy_jit_compile

ON_ACCELERATOR = bool(tf.config.list_logical_devices("GPU")
                      + tf.config.list_logical_devices("TPU"))


@pytest.mark.parametrize("value,expected", [
    (True, True), (False, False), ("TRUE", True), ("false", False)])
def test_explicit_values_pass_through(value, expected):
    assert resolve_policy_jit_compile(value, NetworkConfig()) is expected


def test_unknown_value_names_the_choices():
    with pytest.raises(ValueError, match="'auto', 'true' or 'false'"):
        resolve_policy_jit_compile("fast")


@pytest.mark.skipif(ON_ACCELERATOR, reason="auto is XLA on every accelerator")
@pytest.mark.parametrize("encoder,noisy,penultimate,expected", [
    ("impala", False, "softmoe", True),        # DQN: XLA faster on all ten
    ("nature", False, "flatten", True),
    ("impala", True, "softmoe", True),         # noisy Impala: XLA faster
    ("impala", True, "flatten", True),
    ("nature", True, "softmoe", True),
    ("nature", True, "flatten", False),        # noisy 7744x512 layer: a wash
])
def test_auto_on_cpu_follows_the_per_network_measurements(encoder, noisy,
                                                          penultimate, expected):
    config = NetworkConfig(encoder=encoder, noisy=noisy, penultimate=penultimate,
                           num_experts=4 if penultimate == "softmoe" else None)
    assert resolve_policy_jit_compile("auto", config) is expected
    assert resolve_policy_jit_compile("auto") is ON_ACCELERATOR


def _agent(preset):
    env = catch(0)
    agent = agents.make_agent(*fast_setup(preset), env.time_step_spec(),
                              env.action_spec())
    return env, agent


def _observations(env, count, seed=0):
    rng = np.random.default_rng(seed)
    step = env.reset()
    shape = step.observation.shape
    return [step._replace(observation=rng.integers(0, 256, shape, dtype=np.uint8))
            for _ in range(count)]


@pytest.mark.parametrize("preset", ["dqn", "rainbow"])
def test_xla_and_graph_greedy_policies_pick_the_same_actions(preset):
    env, agent = _agent(preset)
    graph = loop.CompiledPolicy(agent.policy, jit_compile=False)
    xla = loop.CompiledPolicy(agent.policy, jit_compile=True)
    assert (graph.jit_compile, xla.jit_compile) == (False, True)
    steps = _observations(env, 20)
    # The reference: the TF-Agents policy run eagerly on a batch of one.
    eager = [int(agent.policy.action(tf.nest.map_structure(
        lambda x: tf.constant(np.asarray(x)[None]), step)).action.numpy()[0])
             for step in steps]
    assert [graph.action(s) for s in steps] == eager
    assert [xla.action(s) for s in steps] == eager


def test_action_casts_dtypes_and_rejects_wrong_shapes():
    env, agent = _agent("dqn")
    policy = loop.CompiledPolicy(agent.policy)
    step = env.reset()
    expected = policy.action(step)
    # Python scalars and float64 values are cast to the spec's dtypes.
    loose = step._replace(step_type=int(step.step_type), reward=0.0,
                          discount=np.float64(step.discount))
    assert policy.action(loose) == expected
    with pytest.raises(ValueError, match=r"time_step.observation has shape \(6, 12, 1\)"):
        policy.action(step._replace(observation=np.zeros((6, 12, 1), np.uint8)))
    with pytest.raises(ValueError, match="one unbatched time step"):
        policy.action(step._replace(observation=step.observation[None]))


def test_flat_caller_falls_back_to_the_public_call():
    class Public:
        """A concrete function without `_call_flat`."""

        def __call__(self, *tensors):
            return ("public", tensors)

    class Flat(Public):
        captured_inputs = ("v",)

        def _call_flat(self, tensors, captures):
            return ("flat", tuple(tensors), captures)

    assert flat_call.flat_caller(Public())([1, 2]) == ("public", (1, 2))
    assert flat_call.flat_caller(Flat())([1, 2]) == ("flat", (1, 2), ("v",))


def test_collect_policy_sees_the_updated_variables():
    """Captured variables are read at every call, not frozen at tracing."""
    env, agent = _agent("dqn")
    policy = loop.CompiledPolicy(agent.policy, jit_compile=True)
    steps = _observations(env, 10, seed=1)
    head = [v for v in agent.q_network.trainable_variables
            if "head" in v.name and "bias" in v.name][0]
    for action in range(int(env.action_spec().maximum) + 1):
        bias = np.full(head.shape, -10.0, np.float32)
        bias[action] = 10.0
        head.assign(bias)
        assert {policy.action(s) for s in steps} == {action}


@pytest.mark.skipif(ON_ACCELERATOR, reason="auto is XLA on every accelerator")
def test_trainer_resolves_auto_from_the_network():
    env, agent = _agent("dqn")
    replay = loop.make_replay(agent.agent_config, env.observation_spec().shape, seed=0)
    learner = learner_lib.Learner(agent, jit_compile=False)
    trainer = loop.Trainer(env, agent, replay, learner, agent.agent_config)
    assert trainer.policy_jit_compile is True and trainer.policy.jit_compile is True
    trainer = loop.Trainer(env, agent, replay, learner, agent.agent_config,
                           policy_jit_compile="false")
    assert trainer.policy.jit_compile is False


def test_schedule_validates_policy_jit_compile():
    assert config_lib.ScheduleConfig(policy_jit_compile="true").policy_jit_compile == "true"
    with pytest.raises(ValueError, match=re.escape(
            "policy_jit_compile='always' is not valid; choose one of "
            "['auto', 'true', 'false']")):
        config_lib.ScheduleConfig(policy_jit_compile="always")


def _acting_sequence(preset, seed, jit_compile, steps=40, **overrides):
    """Actions of `preset`'s collect policy (identical weights every time) on
    `steps` copies of one time step, compiled with `seed`."""
    tf.keras.utils.set_random_seed(0)
    env = catch(0)
    agent = agents.make_agent(*fast_setup(preset, **overrides), env.time_step_spec(),
                              env.action_spec())
    policy = loop.CompiledPolicy(agent.collect_policy, seed=seed, jit_compile=jit_compile)
    step = env.reset()
    return [policy.action(step) for _ in range(steps)], policy, step


@pytest.mark.parametrize("jit_compile", [True, False])
@pytest.mark.parametrize("preset,overrides", [
    ("dqn", {"epsilon_decay_steps": 10**9}),  # ε = 1: every action a draw
    ("rainbow", {}),                           # ε = 0: the noise explores
])
def test_collect_draws_follow_the_seed_compiled_or_not(preset, overrides, jit_compile):
    # Under XLA, TensorFlow's stateful random ops ignore every seed: before
    # the policy's draws came from seeded_draws, two seeds acted alike.
    first, policy, step = _acting_sequence(preset, 1, jit_compile, **overrides)
    again, _, _ = _acting_sequence(preset, 1, jit_compile, **overrides)
    other, _, _ = _acting_sequence(preset, 2, jit_compile, **overrides)
    assert len(set(first)) > 1  # it explores
    assert again == first
    assert other != first
    policy.reseed(1)
    assert [policy.action(step) for _ in range(len(first))] == first


def test_epsilon_greedy_draws_each_row_and_follows_epsilon():
    tf.random.set_seed(0)  # eager draws outside seeded_draws: TensorFlow's seed
    env, agent = _agent("dqn")
    steps = _observations(env, 1)[0]
    batch = tf.nest.map_structure(lambda x: tf.constant(np.repeat(np.asarray(x)[None], 4000, 0)),
                                  steps)
    greedy = agent.policy.action(batch).action.numpy()
    for epsilon, expected in ((0.0, 0.0), (0.3, 0.3 * 2 / 3), (1.0, 2 / 3)):
        policy = agents.EpsilonGreedyPolicy(agent.policy, epsilon=epsilon)
        actions = policy.action(batch).action.numpy()
        changed = np.mean(actions != greedy)  # a random action differs 2 times in 3
        assert abs(changed - expected) < 0.03, (epsilon, changed)
        assert set(np.unique(actions)) <= {0, 1, 2}


def test_epsilon_greedy_refuses_an_exploration_mask():
    _, agent = _agent("dqn")
    with pytest.raises(ValueError, match="exploration_mask"):
        agents.EpsilonGreedyPolicy(agent.policy, epsilon=0.1, exploration_mask=[1, 1, 0])
