"""JAX peer: dopamine-rl 4.1.2's own MoE train steps (`dopamine/labs/moes`).

Used as a library, unchanged: the networks are
`dopamine.labs.moes.architectures.networks.NatureDQNMoE` / `ImpalaMoE` (DQN)
and `FullRainbowMoENetwork` (Rainbow: noisy, dueling, C51, encoder_type CNN
or IMPALA), the steps are the jitted module-level `train` functions of
`dopamine.labs.moes.agents.dqn_moe_agent` and `full_rainbow_moe_agent`, and
the optimiser is `dopamine.jax.agents.dqn.dqn_agent.create_optimizer`
(Adam, lr 6.25e-5, eps 1.5e-4), as the agents build them. Statistics
logging is off (tf_softmoe's train step computes none either).

Block mapping (their knobs): flatten1 = BASELINE; flatten4 = BASELINE with
scale_hidden_layer and num_experts 4 (2048 units); softmoe4 = SOFTMOE with 4
experts of 512; softmoe1x4 = SOFTMOE with 1 expert of 2048. The package has
no tokenized_sum block: that case reports an error instead of a time.

Two defects of the 4.1.2 package are worked around without touching it:
  * `FullRainbowMoENetwork` passes its float `nn_scale=1.0` to the Impala
    encoder, whose conv widths then are floats that Flax rejects; we pass
    `nn_scale=1`.
  * `FullRainbowMoENetwork`'s BASELINE (flatten) branch never sets
    `x_hidden` and raises UnboundLocalError. For the Rainbow flatten cases
    `ComposedRainbowBaseline` wires the package's own modules the way that
    branch does (their `RainbowCNNet` / `ImpalaEncoder`, `feature_layer`
    noisy layers, dueling C51 head, their `RainbowNetworkType` output) and
    runs under the same `full_rainbow_moe_agent.train`.

Their networks run per sample under `jax.vmap`, and the Rainbow loss gives
each sample its own noise key, so every noisy layer materialises a
[batch, in, out] weight tensor; tf_softmoe and the PyTorch peer share one
noise draw across the batch. That is their code's cost and is timed as is.

One timed step ends when the new parameters and the per-sample loss are
ready and the loss is on the host (what the agent reads for priorities).
Run inside the jax virtual environment as a worker of
`benchmarks.train_step_bench` (protocol in `benchmarks.peers.protocol`).
"""

import os

import numpy as np

from benchmarks.peers import cases as cases_lib
from benchmarks.peers import protocol

_BLOCKS = {
    "flatten1": dict(moe_type="BASELINE", num_experts=1, expert_hidden_units=512,
                     scale_hidden_layer=False),
    "flatten4": dict(moe_type="BASELINE", num_experts=4, expert_hidden_units=512,
                     scale_hidden_layer=True),
    "softmoe4": dict(moe_type="SOFTMOE", num_experts=4, expert_hidden_units=512),
    "softmoe1x4": dict(moe_type="SOFTMOE", num_experts=1, expert_hidden_units=2048),
}


class UnsupportedCase(ValueError):
    """A case whose block dopamine-rl 4.1.2 does not ship: the benchmark
    reports it as "no JAX time" for that row."""


def _composed_rainbow_baseline():
    """The flatten Rainbow network from the package's own modules (see the
    module docstring for why)."""
    import flax.linen as nn  # pylint: disable=g-import-not-at-top
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    from dopamine.discrete_domains import atari_lib  # pylint: disable=g-import-not-at-top
    from dopamine.jax import networks as base_networks  # pylint: disable=g-import-not-at-top
    from dopamine.labs.moes.architectures import networks  # pylint: disable=g-import-not-at-top

    class ComposedRainbowBaseline(nn.Module):
        """encoder → flatten → noisy Dense(hidden) → ReLU → dueling C51."""

        num_actions: int
        num_atoms: int
        encoder_type: str
        hidden_units: int

        @nn.compact
        def __call__(self, x, support, eval_mode=False, key=None):
            feature_key = jax.random.split(key, 3)[0]
            x = base_networks.preprocess_atari_inputs(x)
            if self.encoder_type == "CNN":
                x = networks.RainbowCNNet(nn_scale=1)(x)
            else:
                x = base_networks.ImpalaEncoder(nn_scale=1)(x)
            net = base_networks.feature_layer(feature_key, True, eval_mode=eval_mode)
            x = nn.relu(net(x.reshape(-1), self.hidden_units))
            adv = net(x, self.num_actions * self.num_atoms).reshape(
                (self.num_actions, self.num_atoms))
            value = net(x, self.num_atoms).reshape((1, self.num_atoms))
            logits = value + (adv - jnp.mean(adv, axis=0, keepdims=True))
            probabilities = nn.softmax(logits)
            q_values = jnp.sum(support * probabilities, axis=1)
            return atari_lib.RainbowNetworkType(q_values, logits, probabilities)

    return ComposedRainbowBaseline


def build(case):
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    from dopamine.jax.agents.dqn import dqn_agent  # pylint: disable=g-import-not-at-top
    from dopamine.labs.moes.agents import dqn_moe_agent  # pylint: disable=g-import-not-at-top
    from dopamine.labs.moes.agents import full_rainbow_moe_agent  # pylint: disable=g-import-not-at-top
    from dopamine.labs.moes.architectures import networks  # pylint: disable=g-import-not-at-top

    if case["block"] not in _BLOCKS:
        raise UnsupportedCase(
            f"dopamine-rl 4.1.2 has no {case['block']!r} block "
            "(dopamine/labs/moes offers BASELINE, SOFTMOE, MOE, EXPERTCHOICE, "
            "SIMPLICIAL_EMBEDDING_V1/V2).")
    knobs = dict(_BLOCKS[case["block"]])
    rainbow = case["agent"] == "rainbow"
    num_actions = case["num_actions"]
    batch = cases_lib.synthetic_batch(case, 0, np)
    # Dopamine's replay gives terminals; tf_softmoe's gives γ^n'·(1 − terminal).
    terminals = (batch["discount"] == 0).astype(np.float32)
    gamma_n = cases_lib.GAMMA ** cases_lib.N_STEP[case["agent"]]
    rng = jax.random.PRNGKey(0)
    optimizer = dqn_agent.create_optimizer(
        "adam", learning_rate=cases_lib.LEARNING_RATE, eps=cases_lib.ADAM_EPSILON)
    sample = jnp.asarray(batch["state"][0])
    if rainbow:
        encoder_type = "CNN" if case["encoder"] == "nature" else "IMPALA"
        if knobs["moe_type"] == "BASELINE":
            hidden = knobs["expert_hidden_units"] * (
                knobs["num_experts"] if knobs["scale_hidden_layer"] else 1)
            network_def = _composed_rainbow_baseline()(
                num_actions=num_actions, num_atoms=cases_lib.NUM_ATOMS,
                encoder_type=encoder_type, hidden_units=hidden)
        else:
            network_def = networks.FullRainbowMoENetwork(
                num_actions=num_actions, num_atoms=cases_lib.NUM_ATOMS,
                noisy=True, dueling=True, distributional=True,
                encoder_type=encoder_type, nn_scale=1, **knobs)
        support = jnp.linspace(cases_lib.V_MIN, cases_lib.V_MAX, cases_lib.NUM_ATOMS)
        params = network_def.init(rng, x=sample, support=support, key=rng)
    else:
        cls = (networks.NatureDQNMoE if case["encoder"] == "nature"
               else networks.ImpalaMoE)
        network_def = cls(num_actions=num_actions, **knobs)
        params = network_def.init(rng, x=sample, key=rng)
    state = {"online": params, "target": params,
             "opt": optimizer.init(params), "rng": rng, "updates": 0}

    def step():
        if rainbow:
            out = full_rainbow_moe_agent.train(
                network_def, state["online"], state["target"], optimizer,
                state["opt"], batch["state"], batch["action"], batch["next_state"],
                batch["reward"], terminals, batch["importance_weights"], support,
                gamma_n, True, True, False, state["rng"], False, False)
            loss = out["td_loss"]
        else:
            out = dqn_moe_agent.train(
                network_def, state["online"], state["target"], optimizer,
                state["opt"], batch["state"], batch["action"], batch["next_state"],
                batch["reward"], terminals, gamma_n, state["rng"], False, False,
                "mse")
            loss = out["td_loss"]
        state["online"] = out["online_params"]
        state["opt"] = out["optimizer_state"]
        state["rng"] = out["rng"]
        state["updates"] += 1
        if state["updates"] % cases_lib.TARGET_UPDATE_UPDATES == 0:
            state["target"] = state["online"]
        jax.block_until_ready(state["online"])
        return np.asarray(loss)

    num_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
    return step, num_params


def main():
    os.environ["XLA_FLAGS"] = protocol.xla_cpu_flags(protocol.requested_threads())
    import jax  # pylint: disable=g-import-not-at-top
    import flax  # pylint: disable=g-import-not-at-top
    try:
        from importlib import metadata  # pylint: disable=g-import-not-at-top
        dopamine_version = metadata.version("dopamine-rl")
    except Exception:  # noqa: BLE001 — a version is informative only
        dopamine_version = "unknown"
    info = {"peer": "jax_dopamine", "jax": jax.__version__,
            "flax": flax.__version__, "dopamine-rl": dopamine_version,
            "devices": [str(d) for d in jax.devices()],
            "cpu_count": os.cpu_count(),
            "XLA_FLAGS": os.environ["XLA_FLAGS"]}
    protocol.serve(build, info)


if __name__ == "__main__":
    main()
