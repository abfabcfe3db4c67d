"""Loading dopamine/labs/moes parameter trees without JAX: placement, reports,
errors, checkpoints and what can be done with the loaded network.

The trees here are written out by hand with the paths and shapes that
dopamine-rl 4.1.2's `NatureDQNMoE` and `FullRainbowMoENetwork` create (num_actions
3, 2 experts of 8 units, 51 atoms); tests/reference/test_networks.py checks
the outputs against the official code itself.
"""

import os
import pickle
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.policies import policy_saver
from tf_agents.trajectories import time_step as ts

from tf_softmoe.interop import dopamine
from tf_softmoe.networks import NetworkConfig

NATURE = {
    "Conv_0/kernel": (8, 8, 4, 32), "Conv_0/bias": (32,),
    "Conv_1/kernel": (4, 4, 32, 64), "Conv_1/bias": (64,),
    "Conv_2/kernel": (3, 3, 64, 64), "Conv_2/bias": (64,),
}
DQN_SOFTMOE = dict(NATURE, **{
    "SoftMoE_0/phi_weights": (64, 2, 61), "SoftMoE_0/scalar": (1,),
    "ExpertModel_0/net/kernel": (2, 64, 8), "ExpertModel_0/net/bias": (2, 8),
    "ExpertModel_0/Dense_0/kernel": (2, 8, 64), "ExpertModel_0/Dense_0/bias": (2, 64),
    "Dense_0/kernel": (7744, 3), "Dense_0/bias": (3,),
})
DQN_SOFTMOE_CONFIG = NetworkConfig(encoder="nature", penultimate="softmoe",
                                   num_experts=2, hidden_units=8)
RAINBOW_MOE = {f"encoder/{path}": shape for path, shape in NATURE.items()}
RAINBOW_MOE.update({
    "MoE_0/router/Dense_0/kernel": (64, 2),
    "ExpertModel_0/net/kernel_mu": (2, 64, 8), "ExpertModel_0/net/kernel_sigma": (2, 64, 8),
    "ExpertModel_0/net/bias_mu": (2, 8), "ExpertModel_0/net/bias_sigma": (2, 8),
    "ExpertModel_0/Dense_0/kernel": (2, 8, 64), "ExpertModel_0/Dense_0/bias": (2, 64),
})
for _i, _units in ((0, 3 * 51), (1, 51)):
    for _name, _shape in (("kernel_mu", (7744, _units)), ("kernel_sigma", (7744, _units)),
                          ("bias_mu", (_units,)), ("bias_sigma", (_units,))):
        RAINBOW_MOE[f"NoisyNetwork_{_i}/{_name}"] = _shape
# Experts without evaluation noise, so that outputs are deterministic and
# comparable across save/load (by default they stay noisy, as the reference's).
RAINBOW_MOE_CONFIG = NetworkConfig(
    encoder="nature", penultimate="topk_moe", num_experts=2, hidden_units=8,
    head="c51", num_atoms=51, dueling=True, noisy=True, expert_noise_in_eval=False)


def random_tree(shapes, seed=0):
    """Nested {"params": ...} tree of float32 arrays, as `module.init` returns."""
    rng = np.random.default_rng(seed)
    tree = {}
    for path, shape in shapes.items():
        *scopes, leaf = path.split("/")
        node = tree
        for scope in scopes:
            node = node.setdefault(scope, {})
        node[leaf] = rng.normal(0.0, 0.05, shape).astype(np.float32)
    return {"params": tree}


def frames(batch=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, 84, 84, 4), np.uint8)


@pytest.mark.parametrize("shapes,config", [(DQN_SOFTMOE, DQN_SOFTMOE_CONFIG),
                                           (RAINBOW_MOE, RAINBOW_MOE_CONFIG)],
                         ids=["dqn-nature-softmoe", "rainbow-nature-top1"])
def test_every_parameter_lands_in_its_weight(shapes, config):
    params = random_tree(shapes)
    network, report = dopamine.q_network_from_flax(params, config, num_actions=3)
    assert report.complete and not report.unplaced and not report.unset
    flat = dopamine.flatten_params(params)
    values = {v.name: v.numpy() for v in network.variables}
    assert len(report.loaded) == len(network.variables)
    for path, name in report.loaded:
        np.testing.assert_array_equal(values[name], flat[path])
    ignored = dict(report.ignored)
    if "SoftMoE_0/scalar" in shapes:
        assert set(ignored) == {"SoftMoE_0/scalar"}
        assert "normalisation off" in ignored["SoftMoE_0/scalar"]
    else:
        assert not ignored


def test_flat_and_nested_trees_and_frozen_mappings_load_alike():
    nested = random_tree(DQN_SOFTMOE)
    flat = {f"params/{k}": v for k, v in dopamine.flatten_params(nested).items()}
    without_collection = nested["params"]
    outputs = []
    for tree in (nested, flat, without_collection, types.MappingProxyType(nested)):
        network, report = dopamine.q_network_from_flax(tree, DQN_SOFTMOE_CONFIG, 3)
        assert report.complete
        outputs.append(network(frames())[0].numpy())
    for out in outputs[1:]:
        np.testing.assert_array_equal(out, outputs[0])


def test_normalised_softmoe_takes_the_reference_scalar():
    params = random_tree(DQN_SOFTMOE)
    params["params"]["SoftMoE_0"]["scalar"] = np.array([2.5], np.float32)
    config = DQN_SOFTMOE_CONFIG.replace(normalize=True)
    network, report = dopamine.q_network_from_flax(params, config, 3)
    assert report.complete and not report.ignored
    scale = [v for v in network.variables if v.name.endswith("scale:0")]
    assert len(scale) == 1 and scale[0].shape == () and float(scale[0]) == 2.5


def test_a_missing_parameter_is_named_and_strict_loading_raises():
    params = random_tree(DQN_SOFTMOE)
    del params["params"]["ExpertModel_0"]["Dense_0"]["bias"]
    with pytest.raises(dopamine.IncompleteLoadError,
                       match="ExpertModel_0/Dense_0/bias") as error:
        dopamine.q_network_from_flax(params, DQN_SOFTMOE_CONFIG, 3)
    assert "strict=False" in str(error.value)
    network, report = dopamine.q_network_from_flax(params, DQN_SOFTMOE_CONFIG, 3,
                                                   strict=False)
    assert not report.complete and not report.unplaced
    assert [path for _, path in report.unset] == ["ExpertModel_0/Dense_0/bias"]
    assert "bias_out" in report.unset[0][0]
    assert len(report.loaded) == len(network.variables) - 1


def test_strict_loading_copies_nothing_when_it_raises():
    params = random_tree(DQN_SOFTMOE)
    params["params"]["Dense_1"] = {"kernel": np.zeros((3, 3), np.float32)}
    network, _ = dopamine.q_network_from_flax(random_tree(DQN_SOFTMOE, seed=1),
                                              DQN_SOFTMOE_CONFIG, 3)
    before = [v.numpy() for v in network.variables]
    with pytest.raises(dopamine.IncompleteLoadError, match="Dense_1/kernel"):
        dopamine.load_flax_params(network, params)
    for old, variable in zip(before, network.variables):
        np.testing.assert_array_equal(old, variable.numpy())
    report = dopamine.load_flax_params(network, params, strict=False)
    assert report.unplaced == ("Dense_1/kernel",) and not report.unset


def test_shape_mismatch_lists_each_pair_and_hints_at_the_config():
    valid = NetworkConfig(encoder="nature", nature_padding="valid",
                          penultimate="flatten", hidden_units=8)
    shapes = dict(NATURE, **{"Dense_0/kernel": (7744, 8), "Dense_0/bias": (8,),
                             "Dense_1/kernel": (8, 3), "Dense_1/bias": (3,)})
    with pytest.raises(dopamine.ShapeMismatchError) as error:
        dopamine.q_network_from_flax(random_tree(shapes), valid, 3)
    message = str(error.value)
    assert "Dense_0/kernel: reference (7744, 8)" in message and "(3136, 8)" in message
    assert "nature_padding" in message
    with pytest.raises(dopamine.ShapeMismatchError, match=r"Dense_1/kernel.*\(8, 3\)"):
        dopamine.q_network_from_flax(random_tree(shapes),
                                     valid.replace(nature_padding="same"), 4)


@pytest.mark.parametrize("config,match", [
    (NetworkConfig(penultimate="gap"), "no counterpart"),
    (NetworkConfig(penultimate="expert_choice"), "expert-choice"),
    (NetworkConfig(penultimate="softmoe", tokenizer="shuffled"), "shuffled"),
    (NetworkConfig(penultimate="topk_moe", top_k=2), "top-1"),
    (NetworkConfig(penultimate="flatten", dueling=True), "one linear layer"),
])
def test_networks_the_reference_does_not_have_are_refused(config, match):
    with pytest.raises(ValueError, match=match):
        dopamine.q_network_from_flax(random_tree(NATURE), config, 3)


def test_loaded_network_saves_as_keras_and_exports_a_tf_agents_policy(tmp_path):
    network, _ = dopamine.q_network_from_flax(random_tree(RAINBOW_MOE),
                                              RAINBOW_MOE_CONFIG, 3)
    observations = frames(batch=4)
    expected = dopamine.reference_outputs(network, observations)

    model = network.as_keras_model()
    model.save(str(tmp_path / "q_network.keras"))
    restored = tf.keras.models.load_model(str(tmp_path / "q_network.keras"))
    np.testing.assert_allclose(restored(observations).numpy(), expected["logits"],
                               rtol=1e-6, atol=1e-6)

    policy = dopamine.greedy_policy(network)
    policy_saver.PolicySaver(policy, batch_size=None).save(str(tmp_path / "policy"))
    saved = tf.saved_model.load(str(tmp_path / "policy"))
    steps = ts.restart(tf.constant(observations), batch_size=4)
    actions = saved.action(steps).action.numpy()
    np.testing.assert_array_equal(actions, expected["q_values"].argmax(-1))


def test_dqn_greedy_policy_takes_the_argmax_of_the_q_values():
    network, _ = dopamine.q_network_from_flax(random_tree(DQN_SOFTMOE),
                                              DQN_SOFTMOE_CONFIG, 3)
    observations = frames(batch=4)
    steps = ts.restart(tf.constant(observations), batch_size=4)
    actions = dopamine.greedy_policy(network).action(steps).action.numpy()
    q_values = dopamine.reference_outputs(network, observations)["q_values"]
    np.testing.assert_array_equal(actions, q_values.argmax(-1))


class _FakeModule(types.ModuleType):
    """Stands in for a JAX/Flax module while pickling the reference's format."""


def _write_checkpoint_like_dopamine(path, tree):
    """Pickles a bundle with the globals Dopamine's JAX agents write:
    `jax._src.array._reconstruct_array` for arrays, Flax `FrozenDict` for the
    parameters and Optax namedtuple states for the optimiser."""
    saved = {name: sys.modules.get(name) for name in
             ("jax", "jax._src", "jax._src.array", "flax", "flax.core",
              "flax.core.frozen_dict", "optax", "optax._src", "optax._src.transform")}
    try:
        array_module = _FakeModule("jax._src.array")

        def _reconstruct_array(fun, args, arr_state, aval_state):
            raise AssertionError("never called while writing")
        _reconstruct_array.__module__ = "jax._src.array"
        _reconstruct_array.__qualname__ = "_reconstruct_array"
        array_module._reconstruct_array = _reconstruct_array

        class JaxArray:
            def __init__(self, value):
                self.value = value

            def __reduce__(self):
                fun, args, state = self.value.__reduce__()
                return _reconstruct_array, (fun, args, state, {"weak_type": False})

        frozen_module = _FakeModule("flax.core.frozen_dict")

        class FrozenDict(dict):
            def __reduce__(self):
                return FrozenDict, (dict(self),)
        FrozenDict.__module__ = "flax.core.frozen_dict"
        FrozenDict.__qualname__ = "FrozenDict"
        frozen_module.FrozenDict = FrozenDict

        optax_module = _FakeModule("optax._src.transform")

        class ScaleByAdamState(tuple):
            def __reduce__(self):
                return ScaleByAdamState, (tuple(self),)
        ScaleByAdamState.__module__ = "optax._src.transform"
        ScaleByAdamState.__qualname__ = "ScaleByAdamState"
        optax_module.ScaleByAdamState = ScaleByAdamState
        for name in saved:
            sys.modules[name] = _FakeModule(name)
        sys.modules.update({"jax._src.array": array_module,
                            "flax.core.frozen_dict": frozen_module,
                            "optax._src.transform": optax_module})

        def convert(node):
            if isinstance(node, dict):
                return FrozenDict({k: convert(v) for k, v in node.items()})
            return JaxArray(node)
        bundle = {"state": np.zeros((1, 84, 84, 4), np.uint8), "training_steps": 7,
                  "online_params": convert(tree), "target_params": convert(tree),
                  "optimizer_state": ScaleByAdamState((JaxArray(np.zeros(2)),)),
                  "current_iteration": 3}
        with open(path, "wb") as f:
            pickle.dump(bundle, f)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def test_dopamine_checkpoint_loads_without_jax(tmp_path):
    tree = random_tree(DQN_SOFTMOE)
    path = str(tmp_path / "ckpt.3")
    _write_checkpoint_like_dopamine(path, tree)
    bundle = dopamine.read_dopamine_checkpoint(path)
    assert bundle["training_steps"] == 7 and bundle["current_iteration"] == 3
    assert isinstance(bundle["optimizer_state"], dopamine.OpaqueObject)
    kernel = bundle["online_params"]["params"]["Dense_0"]["kernel"]
    assert isinstance(kernel, np.ndarray)
    np.testing.assert_array_equal(kernel, tree["params"]["Dense_0"]["kernel"])

    network, _ = dopamine.q_network_from_flax(random_tree(DQN_SOFTMOE, seed=5),
                                              DQN_SOFTMOE_CONFIG, 3)
    report = dopamine.load_dopamine_checkpoint(network, path)
    assert report.complete
    reference, _ = dopamine.q_network_from_flax(tree, DQN_SOFTMOE_CONFIG, 3)
    np.testing.assert_array_equal(network(frames())[0].numpy(),
                                  reference(frames())[0].numpy())
    with pytest.raises(KeyError, match="online_params"):
        dopamine.load_dopamine_checkpoint(network, path, which="params")


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return os.system, ("echo pwned",)
    path = str(tmp_path / "ckpt.0")
    with open(path, "wb") as f:
        pickle.dump({"online_params": Exploit()}, f)
    with pytest.raises(pickle.UnpicklingError, match="cannot run code"):
        dopamine.read_dopamine_checkpoint(path)
