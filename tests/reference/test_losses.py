"""Losses and priorities against the official code's functions.

Our agents compute their loss on our networks' outputs; the same outputs
(Q-values or C51 logits for s and s'), returns, terminals and sampling
probabilities go to dopamine-rl 4.1.2's target and loss functions
(`dqn_moe_agent.target_q`, `full_rainbow_agent.target_output`,
`dopamine.jax.losses`), reduced as the moes agents reduce them. Networks are
noise-free here so that both sides see the same outputs.
"""

import types

import numpy as np
import pytest
import tensorflow as tf

from tf_softmoe import agents
from tf_softmoe.train import loop
from tests.agents.catch_setup import catch, fast_setup

GAMMA = 0.99
BATCH = 32

_REFERENCE_HELPERS = """
    import collections as _collections
    import jax, jax.numpy as jnp
    from dopamine.jax import losses
    from dopamine.jax.agents.full_rainbow import full_rainbow_agent
    from dopamine.labs.moes.agents import dqn_moe_agent
    # Networks are replaced by lookups of our networks' outputs: a "state" is
    # the sample's index.
    _Out = _collections.namedtuple("_Out", ["q_values", "probabilities"])
    def lookup(table, support=None):
        table = jnp.asarray(table)
        def net(index, key):
            del key
            if support is None:
                return _Out(table[index], None)
            probs = jax.nn.softmax(table[index], axis=-1)
            return _Out(jnp.sum(probs * support, -1), probs)
        return net
    index = jnp.arange(inputs["reward"].shape[0])
    key = jax.random.PRNGKey(0)
"""


def n_step_batch(env, n_step, seed=0):
    """A replay batch of n-step samples, a third of them cut by a terminal."""
    rng = np.random.default_rng(seed)
    shape = env.observation_spec().shape
    terminal = np.zeros(BATCH, np.float32)
    terminal[::3] = 1.0
    return {
        "state": rng.integers(0, 256, (BATCH,) + shape).astype(np.uint8),
        "next_state": rng.integers(0, 256, (BATCH,) + shape).astype(np.uint8),
        "action": rng.integers(0, 3, BATCH).astype(np.int32),
        "reward": rng.normal(scale=2.0, size=BATCH).astype(np.float32),
        "terminal": terminal,
        # Our replay folds γ^n and the terminal into one bootstrap discount.
        "discount": (GAMMA ** n_step * (1.0 - terminal)).astype(np.float32),
        "sampling_probabilities": rng.uniform(1e-4, 1e-2, BATCH).astype(np.float32),
    }


def perturb_target(agent):
    for variable in agent.target_q_network.variables:
        variable.assign(variable + tf.random.normal(variable.shape, stddev=0.1, seed=1))


def outputs_of(agent, batch):
    """Our online and target networks' outputs for s and s'."""
    online = agent.q_network
    target = agent.target_q_network
    return {"online": online(batch["state"])[0].numpy(),
            "online_next": online(batch["next_state"])[0].numpy(),
            "target_next": target(batch["next_state"])[0].numpy()}


@pytest.mark.parametrize("loss,double_q", [("mse", False), ("huber", False),
                                           ("mse", True)])
def test_dqn_loss_matches_the_reference(reference, loss, double_q):
    tf.random.set_seed(0)
    env = catch(0)
    config, network = fast_setup("dqn", loss=loss, double_q=double_q)
    agent = agents.make_agent(config, network, env.time_step_spec(), env.action_spec())
    perturb_target(agent)
    batch = n_step_batch(env, n_step=1)
    transition = agents.batch_to_transition(batch)
    loss_info = agent.loss_on(transition, training=True)
    nets = outputs_of(agent, batch)
    # Bootstrapped Q-values differ by sample, so the terminals and the max
    # (or double-Q argmax) matter; a wrong ½ or reduction shows as a 2x gap.
    out = reference(_REFERENCE_HELPERS + """
    reward, terminal = jnp.asarray(inputs["reward"]), jnp.asarray(inputs["terminal"])
    if bool(inputs["double_q"]):
        # dqn_moe_agent has no double-Q; the full Rainbow agent's
        # non-distributional target is the reference's double DQN.
        target = full_rainbow_agent.target_output(
            lookup(inputs["online_next"]), lookup(inputs["target_next"]), index,
            reward, terminal, None, 0.99, True, False, key)
    else:
        target = dqn_moe_agent.target_q(lookup(inputs["target_next"]), index, reward,
                                        terminal, 0.99, key)
    chosen = jnp.take_along_axis(jnp.asarray(inputs["online"]),
                                 jnp.asarray(inputs["action"])[:, None], 1)[:, 0]
    fn = losses.huber_loss if str(inputs["loss"]) == "huber" else losses.mse_loss
    td_loss = jax.vmap(fn)(target, chosen)
    outputs["td_loss"] = td_loss
    outputs["loss"] = jnp.mean(td_loss)  # dqn_moe_agent's reduction
    """, reward=batch["reward"], terminal=batch["terminal"], action=batch["action"],
        loss=np.array(loss), double_q=np.array(double_q), **nets)
    np.testing.assert_allclose(loss_info.extra.td_loss, out["td_loss"], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(loss_info.loss, out["loss"], rtol=1e-5)


@pytest.mark.parametrize("double_q", [True, False])
def test_rainbow_c51_loss_and_priorities_match_the_reference(reference, double_q):
    """n = 3, terminals, double-Q, importance weights from the sampling
    probabilities (the reference's 1/sqrt(p), divided by its max), and the
    priorities our loop writes back: sqrt(ℓ + 1e-10)."""
    tf.random.set_seed(0)
    env = catch(0)
    config, network = fast_setup("rainbow", n_step=3, v_min=-10.0, v_max=10.0, num_atoms=51,
                         noisy=False, double_q=double_q)
    agent = agents.make_agent(config, network, env.time_step_spec(), env.action_spec())
    perturb_target(agent)
    batch = n_step_batch(env, n_step=3)
    nets = outputs_of(agent, batch)
    out = reference(_REFERENCE_HELPERS + """
    support = jnp.linspace(-10.0, 10.0, 51)
    reward, terminal = jnp.asarray(inputs["reward"]), jnp.asarray(inputs["terminal"])
    target = full_rainbow_agent.target_output(
        lookup(inputs["online_next"], support), lookup(inputs["target_next"], support),
        index, reward, terminal, support, 0.99 ** 3, bool(inputs["double_q"]), True, key)
    chosen = jnp.take_along_axis(
        jnp.asarray(inputs["online"]), jnp.asarray(inputs["action"])[:, None, None], 1)[:, 0]
    td_loss = jax.vmap(losses.softmax_cross_entropy_loss_with_logits)(target, chosen)
    probs = jnp.asarray(inputs["sampling_probabilities"])
    loss_weights = 1.0 / jnp.sqrt(probs + 1e-10)
    loss_weights /= jnp.max(loss_weights)
    outputs.update(target=target, td_loss=td_loss, loss_weights=loss_weights,
                   loss=jnp.mean(loss_weights * td_loss),
                   priorities=jnp.sqrt(td_loss + 1e-10))
    """, reward=batch["reward"], terminal=batch["terminal"], action=batch["action"],
        sampling_probabilities=batch["sampling_probabilities"],
        double_q=np.array(double_q), **nets)
    loss_info = agent.loss_on(agents.batch_to_transition(batch),
                            weights=out["loss_weights"], training=True)
    per_sample = loss_info.extra.per_sample_loss.numpy()
    np.testing.assert_allclose(per_sample, out["td_loss"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss_info.loss, out["loss"], rtol=1e-5)
    support = agent.support.numpy()
    np.testing.assert_allclose(loss_info.extra.td_error + (
        tf.nn.softmax(nets["online"][np.arange(BATCH), batch["action"]]).numpy()
        * support).sum(-1), (out["target"] * support).sum(-1), rtol=1e-4, atol=1e-5)

    written = {}
    replay = types.SimpleNamespace(
        prioritized=True,
        update_priorities=lambda indices, priorities: written.update(
            indices=indices, priorities=priorities))
    trainer = types.SimpleNamespace(replay=replay, config=config, diagnostics_period=0)
    loop.Trainer._record_update(  # pylint: disable=protected-access
        trainer, loop.PhaseStats(), {"indices": np.arange(BATCH)},
        {"per_sample_loss": per_sample, "loss": float(loss_info.loss),
         "td_error_mean": 0.0, "td_error_var": 0.0})
    np.testing.assert_allclose(written["priorities"], out["priorities"], rtol=1e-5)
