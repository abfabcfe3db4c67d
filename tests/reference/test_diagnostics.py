"""Dormant-neuron fraction against the reference's own computation.

labs/moes computes its dormant share inside `dqn_moe_agent.train` (when
`log_dormant_statistics`): mean |activation| over the batch, normalised by
its sum over the layer, units with score <= 0 counted, as a percentage. The
reference run here is that `train` itself, with a probe network whose hidden
activations are the given arrays (its state input), so the number compared
is the one the reference logs. (In 4.1.2 that statistic cannot run as
shipped: see the enum work-around in the script.)
"""

import numpy as np
import pytest

from tf_softmoe.metrics import diagnostics

_REFERENCE_SCRIPT = """
import enum
import flax.linen as nn
import jax, jax.numpy as jnp, optax
from dopamine.labs.moes.agents import dqn_moe_agent
from dopamine.labs.moes.architectures import networks
from dopamine.labs.moes.architectures import types as arch_types

# 4.1.2's train() compares with MoEType.DROPLESSMOE, which its MoEType lacks,
# so log_dormant_statistics=True fails for every network. The enum is
# extended by that one member, in this process only.
networks.MoEType = enum.Enum(
    "MoEType", [m.name for m in networks.MoEType] + ["DROPLESSMOE"])

class Probe(nn.Module):
    # The reference reads moe_type to pick the statistics' axes.
    moe_type: str = "BASELINE"

    @nn.compact
    def __call__(self, x, key=None):
        return arch_types.BaselineNetworkReturn(
            q_values=nn.Dense(2)(x), hidden_act=x)

network = Probe()
optimizer = optax.adam(1e-4)
for name in inputs["names"]:
    name = str(name)
    states = jnp.asarray(inputs[name])
    params = network.init(jax.random.PRNGKey(0), states[0])
    batch = states.shape[0]
    out = dqn_moe_agent.train(
        network, params, params, optimizer, optimizer.init(params), states,
        jnp.zeros(batch, jnp.int32), states, jnp.zeros(batch), jnp.zeros(batch),
        0.99, jax.random.PRNGKey(1), False, True)
    outputs[name] = np.asarray(out["Stats/dormant_percentage"])
"""


def _cases():
    rng = np.random.default_rng(5)
    relu = rng.normal(size=(32, 64)).clip(min=0).astype(np.float32)
    dead = relu.copy()
    dead[:, [0, 5, 6, 40, 63]] = 0.0          # exactly dead units
    low_rank = np.maximum(rng.normal(size=(32, 3)) @ rng.normal(size=(3, 64)),
                          0).astype(np.float32)
    nearly_dead = relu.copy()
    nearly_dead[:, 7] = 1e-7                  # alive, if barely
    silent = np.zeros((32, 64), np.float32)   # every unit dead
    return {"random": relu, "dead": dead, "low_rank": low_rank,
            "nearly_dead": nearly_dead, "silent": silent}


@pytest.fixture(scope="module")
def reference_percentages(reference):
    cases = _cases()
    return reference(_REFERENCE_SCRIPT, names=np.array(sorted(cases)), **cases)


@pytest.mark.parametrize("name", sorted(_cases()))
def test_dormant_fraction_matches_the_reference_share(reference_percentages, name):
    activations = _cases()[name]
    ours = float(diagnostics.dormant_fraction(activations))   # tau = 0
    assert 100.0 * ours == pytest.approx(float(reference_percentages[name]),
                                         abs=1e-4)


def test_the_cases_cover_dead_and_live_units(reference_percentages):
    assert float(reference_percentages["dead"]) == pytest.approx(100 * 5 / 64)
    assert float(reference_percentages["silent"]) == pytest.approx(100.0)
