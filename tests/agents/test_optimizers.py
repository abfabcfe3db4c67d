"""FusedAdam: Keras Adam's update in TensorFlow's fused kernel."""

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec

from tf_softmoe import agents
from tf_softmoe import networks
from tf_softmoe.agents import policies
from tf_softmoe.agents.optimizers import FusedAdam
from tests.agents.catch_setup import catch, fast_config, fast_setup

SHAPES = [(7, 5), (5,), (3, 3, 2, 4)]


def run_updates(cls, updates=4, jit_compile=False, seed=0, **kwargs):
    """Variables and slots after `updates` steps of `cls` on fixed gradients."""
    rng = np.random.default_rng(seed)
    variables = [tf.Variable(rng.normal(size=s).astype(np.float32)) for s in SHAPES]
    grads = [[tf.constant(rng.normal(size=s).astype(np.float32)) for s in SHAPES]
             for _ in range(updates)]
    optimizer = cls(learning_rate=0.01, epsilon=1e-3, **kwargs)
    optimizer.build(variables)
    apply = tf.function(lambda g: optimizer.apply_gradients(zip(g, variables)),
                        jit_compile=jit_compile)
    for g in grads:
        apply(g)
    return ([v.numpy() for v in variables] + [m.numpy() for m in optimizer._momentums]
            + [v.numpy() for v in optimizer._velocities])


@pytest.mark.parametrize("adaptive_epsilon", [True, False])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_matches_keras_adam_to_float_round_off(adaptive_epsilon, jit_compile):
    ours = run_updates(FusedAdam, jit_compile=jit_compile,
                       adaptive_epsilon=adaptive_epsilon)
    keras = run_updates(tf.keras.optimizers.Adam, jit_compile=jit_compile,
                        adaptive_epsilon=adaptive_epsilon)
    for a, b in zip(ours, keras):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The updates did move the variables (this is not comparing two no-ops).
    start = run_updates(FusedAdam, updates=0)
    assert np.abs(ours[0] - start[0]).max() > 0.02


def test_adaptive_epsilon_changes_the_update_as_keras_does():
    # With a large ε the placement matters; both optimizers agree on each.
    for adaptive in (True, False):
        ours = run_updates(FusedAdam, adaptive_epsilon=adaptive)
        keras = run_updates(tf.keras.optimizers.Adam, adaptive_epsilon=adaptive)
        np.testing.assert_allclose(ours[0], keras[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(run_updates(FusedAdam, adaptive_epsilon=True)[0],
                           run_updates(FusedAdam, adaptive_epsilon=False)[0])


def test_sparse_gradients_and_amsgrad_take_keras_code_exactly():
    ours = run_updates(FusedAdam, amsgrad=True)
    keras = run_updates(tf.keras.optimizers.Adam, amsgrad=True)
    for a, b in zip(ours, keras):
        np.testing.assert_array_equal(a, b)

    def sparse(cls):
        table = tf.Variable(np.arange(12, dtype=np.float32).reshape(4, 3))
        optimizer = cls(learning_rate=0.1)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.gather(table, [0, 2]) ** 2)
        grad = tape.gradient(loss, table)
        assert isinstance(grad, tf.IndexedSlices)
        optimizer.apply_gradients([(grad, table)])
        return table.numpy()

    np.testing.assert_array_equal(sparse(FusedAdam), sparse(tf.keras.optimizers.Adam))


def test_config_round_trip_and_serialization():
    optimizer = FusedAdam(learning_rate=6.25e-5, epsilon=1.5e-4, adaptive_epsilon=True,
                          global_clipnorm=10.0)
    config = optimizer.get_config()
    clone = FusedAdam.from_config(config)
    assert clone.get_config() == config
    restored = tf.keras.optimizers.deserialize(tf.keras.optimizers.serialize(optimizer))
    assert isinstance(restored, FusedAdam)
    assert restored.global_clipnorm == 10.0 and restored.adaptive_epsilon


def test_checkpoints_restore_across_keras_adam(tmp_path):
    variable = tf.Variable([1.0, -2.0, 3.0])
    keras = tf.keras.optimizers.Adam(learning_rate=0.1)
    for _ in range(3):
        keras.apply_gradients([(tf.constant([0.5, 0.1, -0.3]), variable)])
    path = tf.train.Checkpoint(variable=variable, optimizer=keras).save(str(tmp_path / "c"))

    variable_2 = tf.Variable([0.0, 0.0, 0.0])
    fused = FusedAdam(learning_rate=0.1)
    fused.build([variable_2])
    tf.train.Checkpoint(variable=variable_2, optimizer=fused).restore(
        path).assert_consumed()
    assert int(fused.iterations) == 3
    np.testing.assert_array_equal(fused._momentums[0].numpy(), keras._momentums[0].numpy())
    # One more step from the same state: the same result.
    keras.apply_gradients([(tf.constant([0.2, 0.2, 0.2]), variable)])
    fused.apply_gradients([(tf.constant([0.2, 0.2, 0.2]), variable_2)])
    np.testing.assert_allclose(variable_2.numpy(), variable.numpy(), rtol=1e-6)


def test_agents_use_it_and_clip_the_global_norm():
    env = catch(0)
    for kind in ("dqn", "rainbow"):
        agent = agents.make_agent(*fast_setup(kind, max_gradient_norm=10.0), 
                                  env.time_step_spec(), env.action_spec())
        optimizer = agent._optimizer  # pylint: disable=protected-access
        assert isinstance(optimizer, FusedAdam)
        assert optimizer.global_clipnorm == 10.0
        # Not TF-Agents' clipping, which takes each variable's norm alone.
        assert agent._gradient_clipping is None  # pylint: disable=protected-access


def test_max_gradient_norm_with_an_own_optimizer_or_not_positive_is_refused():
    step = tf.Variable(0, dtype=tf.int64)
    with pytest.raises(ValueError, match="global_clipnorm=5.0"):
        policies.common_agent_kwargs(fast_config("dqn", max_gradient_norm=5.0), step,
                                     None, tf.keras.optimizers.SGD())
    own = tf.keras.optimizers.SGD()
    assert policies.common_agent_kwargs(fast_config("dqn"), step, None,
                                        own)["optimizer"] is own
    with pytest.raises(ValueError, match="max_gradient_norm must be > 0"):
        fast_config("dqn", max_gradient_norm=0.0)


def optimizer_values(agent):
    return {v.name: v.numpy() for v in agent.optimizer.variables}


@pytest.mark.parametrize("kind", ["dqn", "rainbow"])
def test_agents_build_their_optimizer_so_a_checkpoint_restores_it_at_once(kind, tmp_path):
    # A checkpoint read before the first update must fill Adam's moments at
    # once: one written before any update (a run resumed only to finish its
    # evaluation) would otherwise leave them out.
    env = catch(0)
    setup = fast_setup(kind)
    agent = agents.make_agent(*setup, env.time_step_spec(), env.action_spec())
    weights = agent.q_network.trainable_weights
    assert len(agent.optimizer.variables) == 1 + 2 * len(weights)  # iterations, m, v
    built = [v.name for v in agent.optimizer.variables]
    rng = np.random.default_rng(0)
    agent.optimizer.apply_gradients(
        (tf.constant(rng.normal(size=w.shape).astype(np.float32)), w) for w in weights)
    assert [v.name for v in agent.optimizer.variables] == built  # nothing made twice
    path = tf.train.Checkpoint(agent=agent).write(str(tmp_path / "ckpt"))

    fresh = agents.make_agent(*setup, env.time_step_spec(), env.action_spec())
    tf.train.Checkpoint(agent=fresh).read(path).assert_consumed()
    restored = optimizer_values(fresh)
    for name, value in optimizer_values(agent).items():
        np.testing.assert_array_equal(restored[name], value)
    # Written again before any update, the checkpoint still holds them.
    again = tf.train.Checkpoint(agent=fresh).write(str(tmp_path / "again"))
    assert ({name for name, _ in tf.train.list_variables(again)}
            == {name for name, _ in tf.train.list_variables(path)})


def test_a_legacy_keras_optimizer_is_built_too():
    env = catch(0)
    agent_config, network_config = fast_setup("dqn")
    q_network = networks.build_q_network(
        network_config, tensor_spec.from_spec(env.time_step_spec()).observation,
        tensor_spec.from_spec(env.action_spec()))
    agent = agents.DqnAgent(
        tensor_spec.from_spec(env.time_step_spec()), tensor_spec.from_spec(env.action_spec()),
        q_network, agent_config, tf.Variable(0, dtype=tf.int64),
        optimizer=tf.keras.optimizers.legacy.Adam())
    slots = agent.optimizer.get_slot_names()
    assert sorted(slots) == ["m", "v"]
    for weight in q_network.trainable_weights:
        for slot in slots:
            assert agent.optimizer.get_slot(weight, slot) is not None
