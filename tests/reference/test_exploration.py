"""Exploration against the official code: the ε schedules of every preset and
the noisy layers fed the reference's own noise."""

import numpy as np
import pytest
import tensorflow as tf

from tf_softmoe import config as config_lib
from tf_softmoe import layers
from tf_softmoe.agents import policies
from tf_softmoe.layers import noisy_dense

# The exploration bindings of dopamine/labs/moes/configs/{dqn,full_rainbow,DER}.gin
# (dopamine-rl 4.1.2; the package does not ship the .gin files). The reference
# agent is built from them, so its own constructor decides the ε function.
_COMMON = """
JaxDQNAgent.epsilon_train = 0.01
JaxDQNAgent.epsilon_eval = 0.001
"""
GIN = {
    "dqn": ("dopamine.jax.agents.dqn.dqn_agent.JaxDQNAgent", _COMMON + """
JaxDQNAgent.min_replay_history = 20000
JaxDQNAgent.epsilon_decay_period = 250000
"""),
    "rainbow": ("dopamine.jax.agents.full_rainbow.full_rainbow_agent.JaxFullRainbowAgent",
                _COMMON + """
JaxDQNAgent.min_replay_history = 20000
JaxDQNAgent.epsilon_decay_period = 250000
JaxFullRainbowAgent.noisy = True
JaxFullRainbowAgent.epsilon_fn = @jax.agents.dqn.dqn_agent.linearly_decaying_epsilon
"""),
    "der": ("dopamine.labs.atari_100k.atari_100k_rainbow_agent.Atari100kRainbowAgent",
            _COMMON + """
JaxDQNAgent.min_replay_history = 1600
JaxDQNAgent.epsilon_decay_period = 2000
JaxFullRainbowAgent.noisy = True
JaxFullRainbowAgent.epsilon_fn = @jax.agents.dqn.dqn_agent.linearly_decaying_epsilon
"""),
}


@pytest.mark.parametrize("preset", sorted(GIN))
def test_epsilon_schedule_of_every_preset_matches_the_reference_agent(reference, preset):
    preset_config = config_lib.ExperimentConfig.preset(preset)
    config, noisy = preset_config.agent, preset_config.network.noisy
    warmup, decay = config.min_replay_history, config.epsilon_decay_steps
    steps = np.array(sorted({1, 2, warmup - 1, warmup, warmup + 1, warmup + decay // 3,
                             warmup + decay // 2, warmup + decay - 1, warmup + decay,
                             warmup + decay + 1, 10 * (warmup + decay)}), np.int64)
    agent_class, bindings = GIN[preset]
    out = reference("""
        import importlib, gin, jax.numpy as jnp
        import dopamine.jax.agents.dqn.dqn_agent
        import dopamine.jax.agents.full_rainbow.full_rainbow_agent
        module, name = str(inputs["agent_class"]).rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        gin.parse_config(str(inputs["bindings"]))
        # 4.1.2's agents build their replay without the capacities and batch
        # size it requires (a package defect; no effect on ε).
        gin.bind_parameter("PrioritizedSamplingDistribution.max_capacity", 1000)
        gin.bind_parameter("ReplayBuffer.max_capacity", 1000)
        gin.bind_parameter("ReplayBuffer.batch_size", 32)
        agent = cls(num_actions=4, seed=0)
        outputs["epsilon"] = np.array([float(agent.epsilon_fn(
            agent.epsilon_decay_period, int(t), agent.min_replay_history,
            agent.epsilon_train)) for t in inputs["steps"]])
        outputs["epsilon_eval"] = np.array(agent.epsilon_eval)
        outputs["schedule"] = np.array([agent.min_replay_history,
                                        agent.epsilon_decay_period])
        outputs["epsilon_train"] = np.array(agent.epsilon_train)
    """, agent_class=np.array(agent_class), bindings=np.array(bindings), steps=steps)
    ours = np.array([config.epsilon(int(t), noisy) for t in steps])
    np.testing.assert_allclose(ours, out["epsilon"], rtol=1e-6, atol=1e-7)
    # The collect policy with t − 1 steps taken chooses the t-th action.
    taken = tf.Variable(0, dtype=tf.int64)
    epsilon = policies.linear_epsilon(config, taken, noisy)
    for t, expected in zip(steps, out["epsilon"]):
        taken.assign(int(t) - 1)
        assert float(epsilon()) == pytest.approx(float(expected), abs=1e-6)
    assert config.epsilon_eval == pytest.approx(float(out["epsilon_eval"]))
    assert [warmup, decay] == out["schedule"].tolist()
    assert config.epsilon_end == pytest.approx(float(out["epsilon_train"]))
    if preset != "dqn":
        assert np.all(out["epsilon"] == 0.0)  # zero_epsilon: the noise explores


_NOISY_NETWORK = """
    import jax, jax.numpy as jnp
    from dopamine.jax import networks
    key = jax.random.PRNGKey(int(inputs["key"]))
    x = jnp.asarray(inputs["x"])
    d, u = x.shape[-1], int(inputs["units"])
    # The draws NoisyNetwork makes from its key (dopamine/jax/networks.py).
    key_p, key_q = jax.random.split(key, 2)
    outputs["eps_in"] = networks.NoisyNetwork.sample_noise(key_p, [d, 1])[:, 0]
    outputs["eps_out"] = networks.NoisyNetwork.sample_noise(key_q, [1, u])[0]
"""


def test_noisy_dense_matches_the_reference_noisy_network(reference):
    rng = np.random.default_rng(0)
    d, u = 9, 5
    x = rng.normal(size=(3, d)).astype(np.float32)
    layer = layers.NoisyDense(u, sigma0=0.1)
    layer(x)
    for variable in (layer.kernel_mu, layer.kernel_sigma, layer.bias_mu, layer.bias_sigma):
        variable.assign(rng.normal(scale=0.3, size=variable.shape).astype(np.float32))
    params = {name: getattr(layer, name).numpy()
              for name in ("kernel_mu", "kernel_sigma", "bias_mu", "bias_sigma")}
    out = reference(_NOISY_NETWORK + """
    params = {"params": {k: jnp.asarray(inputs[k]) for k in
                         ("kernel_mu", "kernel_sigma", "bias_mu", "bias_sigma")}}
    for eval_mode in (False, True):
        module = networks.NoisyNetwork(rng_key=key, eval_mode=eval_mode)
        # The reference applies it to one sample at a time (vmap over the batch).
        outputs[f"y_{eval_mode}"] = jax.vmap(
            lambda row: module.apply(params, row, u))(x)
    """, key=np.array(7), x=x, units=np.array(u), **params)
    noise = noisy_dense.ExplicitNoise({("in", d): out["eps_in"], ("out", u): out["eps_out"]})
    np.testing.assert_allclose(layer(x, training=True, noise=noise), out["y_False"],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer(x, training=False), out["y_True"], rtol=1e-5, atol=1e-6)


def test_noisy_experts_match_the_reference_expert_model(reference):
    """The reference's experts (ExpertModel, noisy, vmapped over experts as
    SoftMoE does) all draw from one key: one noise draw for every expert."""
    rng = np.random.default_rng(1)
    n, p, d, h = 3, 2, 6, 4
    slots = rng.normal(size=(n, p, d)).astype(np.float32)
    out = reference(_NOISY_NETWORK + """
    import flax.linen as nn
    from dopamine.labs.moes.architectures import networks as moe_networks

    class Experts(nn.Module):
        @nn.compact
        def __call__(self, slots):
            expert = moe_networks.ExpertModel(expert_hidden_size=u, rng_key=key,
                                              noisy=True)
            # As labs/moes/architectures/softmoe.py maps its experts.
            return nn.vmap(lambda module, z: jax.vmap(module)(z), in_axes=0,
                           out_axes=0, variable_axes={"params": 0},
                           split_rngs={"params": True}, axis_size=x.shape[0])(
                               expert, slots)

    model = Experts()
    params = model.init(jax.random.PRNGKey(3), x)
    (y, hidden) = model.apply(params, x)
    outputs["y"], outputs["hidden"] = y, hidden
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, value in flat:
        outputs["param/" + "/".join(str(getattr(k, "key", k)) for k in path)] = value
    """, key=np.array(5), x=slots, units=np.array(h))
    params = {k.split("/", 2)[-1]: v for k, v in out.items() if k.startswith("param/")}
    layer = layers.ExpertMLP(num_experts=n, hidden_units=h, noisy=True, sigma0=0.1)
    layer(slots[None])
    noisy = [v for k, v in params.items() if "NoisyNetwork" in k or "net/" in k]
    assert len(noisy) == 4, sorted(params)

    def find(fragment):
        (value,) = [v for k, v in params.items() if k.endswith(fragment)]
        return value

    layer.kernel_in.assign(find("kernel_mu"))
    layer.kernel_in_sigma.assign(find("kernel_sigma"))
    layer.bias_in.assign(find("bias_mu"))
    layer.bias_in_sigma.assign(find("bias_sigma"))
    layer.kernel_out.assign(find("Dense_0/kernel"))
    layer.bias_out.assign(find("Dense_0/bias"))
    noise = noisy_dense.ExplicitNoise({("in", d): out["eps_in"], ("out", h): out["eps_out"]})
    y, hidden = layer(slots[None], training=True, return_hidden=True, noise=noise)
    np.testing.assert_allclose(hidden[0], out["hidden"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[0], out["y"], rtol=1e-5, atol=1e-5)
