"""TopKMoE: routing, capacity overflow, and the Keras contract."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tf_softmoe import layers
from tests.layers import layer_checks


def identity_experts(layer, d):
    """Expert e computes relu(x) · (e + 1): easy to read off the outputs."""
    n = layer.num_experts
    h = layer.expert_hidden_units
    assert h == d
    eye = np.eye(d, dtype=np.float32)
    layer.experts.set_weights([
        np.stack([eye] * n), np.zeros((n, d), np.float32),
        np.stack([eye * (e + 1) for e in range(n)]), np.zeros((n, d), np.float32)])


def build_with_router(router_kernel, m, d, k=1, capacity_factor=1.0):
    n = router_kernel.shape[1]
    layer = layers.TopKMoE(num_experts=n, expert_hidden_units=d, k=k,
                           capacity_factor=capacity_factor)
    layer(tf.zeros([1, m, d]))
    layer.router.set_weights([router_kernel.astype(np.float32)])
    identity_experts(layer, d)
    return layer


def test_capacity_overflow_drops_exactly_the_later_tokens():
    """4 tokens, 2 experts, capacity ceil(4/2)=2. Router sends tokens 0,1,2 to
    expert 0 and token 3 to expert 1: token 2 is third in line for expert 0 and
    must come out as zeros; the others come out as gate · (e+1) · x."""
    x = np.array([[[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [0.0, 1.0]]], np.float32)
    router = np.array([[2.0, 0.0], [0.0, 2.0]])  # feature 0 → expert 0
    layer = build_with_router(router, m=4, d=2)
    assert layer.capacity == 2
    out, routing = layer(x, return_routing=True)
    probs = tf.nn.softmax(x @ router.astype(np.float32), axis=-1).numpy()[0]
    expected = np.zeros((4, 2), np.float32)
    expected[0] = probs[0, 0] * 1 * x[0, 0]
    expected[1] = probs[1, 0] * 1 * x[0, 1]
    expected[3] = probs[3, 1] * 2 * x[0, 3]
    np.testing.assert_allclose(out.numpy()[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.numpy()[0, 2], 0.0)
    np.testing.assert_allclose(routing["tokens_per_expert"], [2.0, 1.0])
    np.testing.assert_allclose(routing["dropped_fraction"], 0.25)


def test_top2_first_choices_have_priority_over_second_choices():
    """k=2, 3 tokens, 3 experts, capacity ceil(3·1/3)=1. Every token's first
    choice is expert 0 except token 2 (expert 2). Expert 0 keeps token 0; its
    second choice slot ordering must not let a second choice evict a first."""
    x = np.array([[[3.0, 1.0, 0.0], [3.0, 0.0, 1.0], [0.0, 1.0, 3.0]]], np.float32)
    router = np.eye(3)
    layer = build_with_router(router, m=3, d=3, k=2)
    dispatch, gates = layer.dispatch_mask(
        tf.nn.softmax(x @ router.astype(np.float32), axis=-1))
    dispatch = dispatch.numpy()[0]  # [m, n, C]
    # First choices: token0→e0 (kept), token1→e0 (dropped, full), token2→e2 (kept).
    # Second choices: token0→e1 (kept, e1 empty), token1→e2 (dropped: e2 full),
    # token2→e1 (dropped: e1 taken by token0's second choice, earlier in order).
    assert dispatch[0, 0, 0] == 1 and dispatch[2, 2, 0] == 1
    assert dispatch[0, 1, 0] == 1
    assert dispatch[1].sum() == 0
    assert dispatch[2, 1].sum() == 0
    assert dispatch.sum() == 3
    g = gates.numpy()[0]
    assert g[1].sum() == 0 and g[0, 0] > 0 and g[0, 1] > 0


def test_shapes_counts_and_capacity_for_the_paper_sizes():
    layer = layers.TopKMoE(num_experts=4, expert_hidden_units=512)
    out = layer(tf.zeros([2, 121, 32]))
    assert out.shape == (2, 121, 32)
    assert layer.capacity == math.ceil(121 / 4)
    assert layer.router.kernel.shape == (32, 4)
    assert layer.count_params() == 32 * 4 + 4 * 33312


def test_per_sample_independence():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 20, 6)).astype(np.float32)
    layer = layers.TopKMoE(4, expert_hidden_units=8)
    full = layer(x).numpy()
    np.testing.assert_allclose(layer(x[1:2]).numpy()[0], full[1], atol=1e-6)


def test_config_deepcopy_save_load_xla(tmp_path):
    x = np.random.default_rng(1).normal(size=(2, 121, 8)).astype(np.float32)
    layer = layers.TopKMoE(4, expert_hidden_units=16, k=2, capacity_factor=1.5)
    layer(x)
    assert layer.get_config()["k"] == 2
    layer_checks.assert_config_round_trip(layer, x)
    layer_checks.assert_deepcopy_survives(layer, x)
    layer_checks.assert_xla_matches_eager(layer, tf.constant(x))
    layer_checks.assert_save_load_round_trip(
        layer_checks.wrap_in_model(layers.TopKMoE(4, expert_hidden_units=16), (121, 8)),
        x, str(tmp_path))


@pytest.mark.parametrize("kwargs,match", [
    ({"num_experts": 0}, "num_experts"),
    ({"num_experts": 2, "k": 3}, r"k must be in \[1, num_experts=2\]"),
    ({"num_experts": 2, "capacity_factor": 0}, "capacity_factor"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        layers.TopKMoE(**kwargs)


def test_wrong_rank():
    with pytest.raises(ValueError, match=r"\[batch, tokens, dim\]"):
        layers.TopKMoE(2)(tf.zeros([2, 5]))


def test_router_is_lecun_normal_as_flax_dense():
    layer = layers.TopKMoE(num_experts=64, expert_hidden_units=4)
    layer(tf.zeros([1, 8, 256]))
    assert isinstance(layer.router.kernel_initializer, tf.keras.initializers.LecunNormal)
    assert np.std(layer.router.kernel.numpy()) == pytest.approx(np.sqrt(1 / 256), rel=0.05)
