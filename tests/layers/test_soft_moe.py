"""SoftMoE: SPEC §3 math against an independent NumPy implementation, and the
Keras contract (shapes, config, deepcopy, save/load, XLA, mixed precision)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tf_softmoe import layers
from tests.layers import layer_checks


def numpy_softmax(x, axis):
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def numpy_soft_moe(x, phi, w_in, b_in, w_out, b_out, normalize=False, scale=1.0):
    """SPEC §3 written out per sample with explicit loops over experts/slots."""
    batch, m, d = x.shape
    _, n, p = phi.shape
    out = np.zeros_like(x)
    for b in range(batch):
        xb = x[b]
        if normalize:
            xr = xb / (np.linalg.norm(xb, axis=1, keepdims=True) + 1e-6)
            phir = scale * phi / (np.linalg.norm(phi, axis=0, keepdims=True) + 1e-6)
        else:
            xr, phir = xb, phi
        logits = np.einsum("md,dnp->mnp", xr, phir)
        dispatch = numpy_softmax(logits, axis=0)
        combine = numpy_softmax(logits.reshape(m, n * p), axis=1).reshape(m, n, p)
        slot_out = np.zeros((n, p, d))
        for e in range(n):
            for s in range(p):
                slot_in = (dispatch[:, e, s][:, None] * xb).sum(0)
                hidden = np.maximum(slot_in @ w_in[e] + b_in[e], 0.0)
                slot_out[e, s] = hidden @ w_out[e] + b_out[e]
        for i in range(m):
            out[b, i] = (combine[i][:, :, None] * slot_out).sum((0, 1))
    return out


def random_weights(layer, rng):
    layer.set_weights([rng.normal(size=w.shape).astype(np.float32) * 0.7
                       for w in layer.weights])


@pytest.fixture
def tiny():
    """m=3 tokens of d=2, n=2 experts with p=2 slots, hidden 3."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 2)).astype(np.float32)
    layer = layers.SoftMoE(num_experts=2, expert_hidden_units=3, num_slots=2)
    layer(x)
    random_weights(layer, rng)
    return layer, x


def test_tiny_fixture_matches_numpy_reference(tiny):
    layer, x = tiny
    e = layer.experts
    expected = numpy_soft_moe(x, layer.phi.numpy(), e.kernel_in.numpy(),
                              e.bias_in.numpy(), e.kernel_out.numpy(),
                              e.bias_out.numpy())
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_tiny_fixture_by_hand():
    """One expert, one slot, identity-like expert: numbers checkable on paper.

    Tokens x1=(1,0), x2=(0,1); Φ=(1,0)ᵀ ⇒ logits (1, 0). Dispatch over tokens =
    softmax(1,0) = (e/(1+e), 1/(1+e)) = (0.731059, 0.268941), so the slot input
    is (0.731059, 0.268941). The expert is relu(x I)·I + 0 = the slot input.
    Combine over the single slot is 1 for both tokens, so both outputs equal
    the slot input.
    """
    layer = layers.SoftMoE(num_experts=1, expert_hidden_units=2, num_slots=1)
    x = np.array([[[1.0, 0.0], [0.0, 1.0]]], np.float32)
    layer(x)
    layer.set_weights([np.array([[[1.0]], [[0.0]]], np.float32),
                       np.eye(2, dtype=np.float32)[None], np.zeros((1, 2), np.float32),
                       np.eye(2, dtype=np.float32)[None], np.zeros((1, 2), np.float32)])
    a = math.e / (1 + math.e)
    np.testing.assert_allclose(layer(x), [[[a, 1 - a], [a, 1 - a]]], atol=1e-6)


def test_normalized_variant_matches_numpy_reference():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 3)).astype(np.float32)
    layer = layers.SoftMoE(num_experts=2, expert_hidden_units=4, normalize=True)
    layer(x)
    random_weights(layer, rng)
    layer.scale.assign(2.5)
    e = layer.experts
    expected = numpy_soft_moe(x, layer.phi.numpy(), e.kernel_in.numpy(),
                              e.bias_in.numpy(), e.kernel_out.numpy(),
                              e.bias_out.numpy(), normalize=True, scale=2.5)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_dispatch_sums_to_one_over_tokens_and_combine_over_all_slots(tiny):
    layer, x = tiny
    dispatch, combine = layer.routing_weights(tf.constant(x))
    np.testing.assert_allclose(tf.reduce_sum(dispatch, axis=1), np.ones((2, 2, 2)),
                               atol=1e-6)
    np.testing.assert_allclose(tf.reduce_sum(combine, axis=[2, 3]), np.ones((2, 3)),
                               atol=1e-6)
    # Combine is NOT a per-expert softmax: per expert it does not sum to 1.
    assert not np.allclose(tf.reduce_sum(combine, axis=3), 1.0)


def test_permutation_equivariance_over_tokens():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 121, 8)).astype(np.float32)
    layer = layers.SoftMoE(num_experts=4, expert_hidden_units=16)
    perm = rng.permutation(121)
    np.testing.assert_allclose(layer(x[:, perm]).numpy(), layer(x).numpy()[:, perm],
                               rtol=1e-4, atol=1e-5)


def test_each_sample_is_routed_independently_of_the_batch():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 121, 8)).astype(np.float32)
    layer = layers.SoftMoE(num_experts=4, expert_hidden_units=16)
    full = layer(x).numpy()
    other = x.copy()
    other[1:] = rng.normal(size=other[1:].shape)
    np.testing.assert_allclose(layer(other).numpy()[0], full[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer(x[2:3]).numpy()[0], full[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels,experts,hidden", [(64, 4, 512), (32, 4, 512),
                                                      (32, 1, 2048), (64, 8, 512)])
def test_paper_shapes_and_weight_counts(channels, experts, hidden):
    x = tf.zeros([2, 11, 11, channels])
    tokens = layers.PerConvTokenizer()(x)
    assert tokens.shape == (2, 121, channels)
    layer = layers.SoftMoE(num_experts=experts, expert_hidden_units=hidden)
    assert layer(tokens).shape == (2, 121, channels)
    p = math.ceil(121 / experts)
    assert layer.slots_per_expert == p
    assert layer.phi.shape == (channels, experts, p)
    e = layer.experts
    assert e.kernel_in.shape == (experts, channels, hidden)
    assert e.bias_in.shape == (experts, hidden)
    assert e.kernel_out.shape == (experts, hidden, channels)
    assert e.bias_out.shape == (experts, channels)
    per_expert = channels * hidden + hidden + hidden * channels + channels
    assert layer.count_params() == channels * experts * p + experts * per_expert
    if channels == 32 and hidden == 512:
        assert per_expert == 33312  # the paper's Impala SoftMoE-4 expert


def test_slot_overrides():
    x = tf.zeros([1, 121, 32])
    assert layers.SoftMoE(4, num_slots=1)(x) is not None
    one_slot = layers.SoftMoE(4, num_slots=1)
    one_slot(x)
    assert one_slot.phi.shape == (32, 4, 1)
    tenth = layers.SoftMoE(4, capacity_factor=0.1)
    tenth(x)
    assert tenth.slots_per_expert == math.ceil(121 * 0.1 / 4) == 4


def test_weight_names_are_the_public_layout():
    layer = layers.SoftMoE(2, expert_hidden_units=4, normalize=True, name="moe")
    layer(tf.zeros([1, 6, 3]))
    names = sorted(w.name for w in layer.weights)
    assert names == sorted(["moe/phi:0", "moe/scale:0", "moe/experts/kernel_in:0",
                            "moe/experts/bias_in:0", "moe/experts/kernel_out:0",
                            "moe/experts/bias_out:0"])
    assert layer.scale.shape == ()
    assert layer.scale.numpy() == 1.0


def test_initialisation_scales():
    n, d, h = 4, 64, 512
    layer = layers.SoftMoE(num_experts=n, expert_hidden_units=h)
    layer(tf.zeros([1, 121, d]))
    phi_std = layer.phi.numpy().std()
    assert abs(phi_std - math.sqrt(1.0 / (n * d))) < 0.1 * math.sqrt(1.0 / (n * d))
    bound_in = math.sqrt(6.0 / (d + h))
    bound_out = math.sqrt(6.0 / (h + d))
    for e in range(n):
        k_in = layer.experts.kernel_in.numpy()[e]
        k_out = layer.experts.kernel_out.numpy()[e]
        # Glorot on each expert's own [d, h]: max |w| close to the bound, and
        # the uniform's std bound/sqrt(3) — a stacked Glorot would be sqrt(n) smaller.
        # float32 weights against float64 bounds: allow one float32 rounding.
        assert bound_in * 0.98 < np.abs(k_in).max() <= bound_in * (1 + 1e-6)
        assert abs(k_in.std() - bound_in / math.sqrt(3)) < 0.03 * bound_in
        assert bound_out * 0.98 < np.abs(k_out).max() <= bound_out * (1 + 1e-6)
    np.testing.assert_array_equal(layer.experts.bias_in.numpy(), 0.0)
    np.testing.assert_array_equal(layer.experts.bias_out.numpy(), 0.0)


def test_routing_statistics(tiny):
    layer, x = tiny
    out, routing = layer(x, return_routing=True, return_weights=True)
    np.testing.assert_allclose(out, layer(x), atol=1e-6)
    combine = routing["combine_weights"].numpy()
    np.testing.assert_allclose(routing["gate"], combine.sum(3).mean((0, 1)), atol=1e-6)
    np.testing.assert_allclose(routing["gate"].numpy().sum(), 1.0, atol=1e-6)
    top = combine.reshape(2, 3, -1).argmax(-1) // 2
    counts = np.stack([(top == e).sum() for e in range(2)]) / 2.0
    np.testing.assert_allclose(routing["tokens_per_expert"], counts)
    assert routing["expert_hidden"].shape == (2, 2, 2, 3)


def test_routing_outputs_in_a_functional_model_and_under_xla():
    inputs = tf.keras.Input([11, 11, 8])
    tokens = layers.PerConvTokenizer()(inputs)
    outputs, routing = layers.SoftMoE(4, expert_hidden_units=16)(
        tokens, return_routing=True)
    model = tf.keras.Model(inputs, {"q": layers.TokenAggregation()(outputs),
                                    "gate": routing["gate"]})
    x = np.random.default_rng(4).normal(size=(3, 11, 11, 8)).astype(np.float32)
    result = model(x)
    assert result["q"].shape == (3, 121 * 8)
    assert result["gate"].shape == (4,)
    layer_checks.assert_xla_matches_eager(model, tf.constant(x))


def test_config_deepcopy_save_load_xla(tmp_path):
    x = np.random.default_rng(5).normal(size=(2, 121, 16)).astype(np.float32)
    layer = layers.SoftMoE(4, expert_hidden_units=32, normalize=True, name="moe")
    layer(x)
    layer_checks.assert_config_round_trip(layer, x)
    layer_checks.assert_deepcopy_survives(layer, x)
    layer_checks.assert_xla_matches_eager(layer, tf.constant(x))
    model = layer_checks.wrap_in_model(
        layers.SoftMoE(4, expert_hidden_units=32), (121, 16))
    layer_checks.assert_save_load_round_trip(model, x, str(tmp_path))


def test_dynamic_batch_under_xla():
    layer = layers.SoftMoE(2, expert_hidden_units=8)
    fn = tf.function(layer, jit_compile=True,
                     input_signature=[tf.TensorSpec([None, 9, 4], tf.float32)])
    assert fn(tf.zeros([1, 9, 4])).shape == (1, 9, 4)
    assert fn(tf.zeros([5, 9, 4])).shape == (5, 9, 4)


def test_mixed_bfloat16_policy_keeps_softmax_in_float32():
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = layers.SoftMoE(4, expert_hidden_units=16)
        x = tf.random.normal([2, 121, 8])
        out, routing = layer(tf.cast(x, tf.bfloat16), return_routing=True,
                             return_weights=True)
        assert out.dtype == tf.bfloat16
        assert layer.phi.dtype == tf.float32
        assert routing["combine_weights"].dtype == tf.float32
        np.testing.assert_allclose(
            tf.reduce_sum(routing["combine_weights"], axis=[2, 3]), 1.0, atol=1e-5)
        xla = tf.function(lambda t: layer(t), jit_compile=True)(tf.cast(x, tf.bfloat16))
        assert xla.dtype == tf.bfloat16
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


def test_noisy_experts_draw_noise_only_in_training():
    layer = layers.SoftMoE(2, expert_hidden_units=8, noisy_experts=True,
                           noise_sigma0=0.5)
    x = tf.random.normal([2, 6, 4])
    a, b = layer(x, training=True), layer(x, training=True)
    assert not np.allclose(a, b)
    np.testing.assert_allclose(layer(x, training=False), layer(x), atol=1e-6)
    assert {w.name.split("/")[-1] for w in layer.experts.weights} >= {
        "kernel_in_sigma:0", "bias_in_sigma:0"}


@pytest.mark.parametrize("shape", [[2, 121], [2, 11, 11, 8], [2, None, 8]])
def test_wrong_input_shape_names_the_expected_shape(shape):
    layer = layers.SoftMoE(2)
    with pytest.raises(ValueError, match=r"\[batch, tokens, dim\]"):
        layer.build(tf.TensorShape(shape))


@pytest.mark.parametrize("kwargs,match", [
    ({"num_experts": 0}, "num_experts must be an integer >= 1"),
    ({"num_experts": 2, "capacity_factor": 0.0}, "capacity_factor must be"),
    ({"num_experts": 2, "capacity_factor": -1.0}, "capacity_factor must be"),
    ({"num_experts": 2, "num_slots": 0}, "num_slots must be"),
    ({"num_experts": 2, "expert_hidden_units": 0}, "expert_hidden_units must be"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        layers.SoftMoE(**kwargs)
