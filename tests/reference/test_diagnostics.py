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


# srank. labs/moes logs no delta-srank (Kumar et al.): its
# `full_rainbow_moe_agent.train` (with `log_network_statistics`) logs
# `srank_{t}`, the number of singular values of the [batch, dim] features
# with sigma / sigma_max > t for t in (0.0, 0.001, 0.01), from a float32
# `jnp.linalg.svd`. Ours for that count is `singular_value_threshold_count`.
# The reference run is that `train` itself, with a probe network whose
# features (`hidden_act`) are its state input.
_SRANK_SCRIPT = """
import flax.linen as nn
import jax, jax.numpy as jnp, optax
from dopamine.labs.moes.agents import full_rainbow_moe_agent
from dopamine.labs.moes.architectures import types as arch_types

class Probe(nn.Module):
    moe_type: str = "BASELINE"

    @nn.compact
    def __call__(self, x, key=None, support=None):
        return arch_types.BaselineNetworkReturn(
            q_values=nn.Dense(2)(x), hidden_act=x)

network = Probe()
optimizer = optax.adam(1e-4)
for name in inputs["names"]:
    name = str(name)
    states = jnp.asarray(inputs[name])
    params = network.init(jax.random.PRNGKey(0), states[0])
    batch = states.shape[0]
    out = full_rainbow_moe_agent.train(
        network, params, params, optimizer, optimizer.init(params), states,
        jnp.zeros(batch, jnp.int32), states, jnp.zeros(batch),
        jnp.zeros(batch), jnp.ones(batch), jnp.linspace(-10.0, 10.0, 51),
        0.99, True, False, True, jax.random.PRNGKey(1), False, True)
    stats = out["network_statistics"]
    outputs[name] = np.array(
        [stats[f"srank_{t}"] for t in (0.0, 0.001, 0.01)], np.int64)
"""

_SRANK_THRESHOLDS = (0.0, 0.001, 0.01)


def _srank_cases():
    rng = np.random.default_rng(11)
    random = rng.normal(size=(32, 64)).astype(np.float32)
    # Rank 3 plus a component at 0.5 % of the top one: counted at t=0.001,
    # not at t=0.01.
    basis = np.linalg.qr(rng.normal(size=(64, 4)))[0].T
    mixing = np.linalg.qr(rng.normal(size=(32, 4)))[0]
    low_rank = (mixing * np.array([10.0, 6.0, 3.0, 0.05]) @ basis).astype(
        np.float32)
    relu = np.maximum(rng.normal(size=(32, 64)), 0).astype(np.float32)
    dead = relu.copy()
    dead[:, 20:] = 0.0                        # 44 dead columns: rank <= 20
    wide_dead = np.maximum(rng.normal(size=(32, 8)) @ rng.normal(size=(8, 64)),
                           0).astype(np.float32)
    wide_dead[:, ::2] = 0.0
    return {"random": random, "low_rank": low_rank, "dead": dead,
            "wide_dead": wide_dead}


@pytest.fixture(scope="module")
def reference_sranks(reference):
    cases = _srank_cases()
    return reference(_SRANK_SCRIPT, names=np.array(sorted(cases)), **cases)


@pytest.mark.parametrize("method", ["gram", "svd"])
@pytest.mark.parametrize("name", sorted(_srank_cases()))
def test_threshold_count_matches_the_reference_srank(reference_sranks, name,
                                                     method):
    features = _srank_cases()[name]
    theirs = [int(v) for v in reference_sranks[name]]
    ours = [int(diagnostics.singular_value_threshold_count(
        features, t, method=method)) for t in _SRANK_THRESHOLDS]
    # t = 0 counts rounding noise in the reference's float32 SVD: the
    # zero singular values of a rank-deficient matrix come out at ~1e-7
    # sigma_max and all min(batch, dim) of them are counted. Ours agrees for
    # t > 0 and is compared at t = 0 only on full-rank features.
    assert ours[1:] == theirs[1:]
    if name == "random":
        assert ours[0] == theirs[0] == 32


def test_srank_cases_separate_the_thresholds(reference_sranks):
    # The cases must tell the thresholds apart, else the test is weak.
    assert [int(v) for v in reference_sranks["low_rank"]][1:] == [4, 3]
    assert int(reference_sranks["dead"][2]) <= 20
