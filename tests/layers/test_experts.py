"""ExpertMLP: batched experts equal a per-expert loop; Keras contract."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tf_softmoe import layers
from tests.layers import layer_checks


def test_batched_experts_equal_independent_dense_layers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)  # [b, n, p, d]
    layer = layers.ExpertMLP(num_experts=3, hidden_units=6)
    out, hidden = layer(x, return_hidden=True)
    w_in, b_in, w_out, b_out = (w.numpy() for w in layer.weights)
    for e in range(3):
        h = np.maximum(x[:, e] @ w_in[e] + b_in[e], 0.0)
        np.testing.assert_allclose(hidden[:, e], h, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out[:, e], h @ w_out[e] + b_out[e], rtol=1e-5, atol=1e-5)


def test_output_units_and_shapes():
    layer = layers.ExpertMLP(num_experts=2, hidden_units=8, output_units=3)
    assert layer(tf.zeros([4, 2, 5, 7])).shape == (4, 2, 5, 3)
    assert layer.kernel_out.shape == (2, 8, 3)
    assert layer.count_params() == 2 * (7 * 8 + 8 + 8 * 3 + 3)


def test_per_expert_glorot_bounds():
    n, d, h = 8, 32, 512
    layer = layers.ExpertMLP(num_experts=n, hidden_units=h)
    layer.build((None, n, 4, d))
    bound = math.sqrt(6.0 / (d + h))
    k = layer.kernel_in.numpy()
    # float32 weights against a float64 bound: allow one float32 rounding.
    assert np.abs(k).max() <= bound * (1 + 1e-6)
    assert np.abs(k).max() > 0.98 * bound
    # Experts are initialised independently.
    assert not np.allclose(k[0], k[1])


def test_initializer_seeded_and_serializable():
    init = layers.PerExpertGlorotUniform(seed=3)
    a = init((2, 4, 6)).numpy()
    np.testing.assert_array_equal(a, layers.PerExpertGlorotUniform(seed=3)((2, 4, 6)))
    assert tf.keras.initializers.deserialize(
        tf.keras.initializers.serialize(init)).seed == 3


def test_noisy_first_layer():
    layer = layers.ExpertMLP(num_experts=2, hidden_units=4, noisy=True, sigma0=0.1)
    x = tf.random.normal([2, 2, 3, 5])
    assert not np.allclose(layer(x, training=True), layer(x, training=True))
    np.testing.assert_allclose(layer(x, training=False), layer(x, training=False))
    np.testing.assert_allclose(layer.kernel_in_sigma.numpy(), 0.1 / math.sqrt(5))


def test_config_deepcopy_save_load_xla(tmp_path):
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 5)).astype(np.float32)
    layer = layers.ExpertMLP(3, hidden_units=6)
    layer(x)
    layer_checks.assert_config_round_trip(layer, x)
    layer_checks.assert_deepcopy_survives(layer, x)
    layer_checks.assert_xla_matches_eager(layer, tf.constant(x))
    layer_checks.assert_save_load_round_trip(
        layer_checks.wrap_in_model(layers.ExpertMLP(3, hidden_units=6), (3, 4, 5)),
        x, str(tmp_path))


def test_wrong_expert_axis():
    with pytest.raises(ValueError, match=r"num_experts=3"):
        layers.ExpertMLP(3)(tf.zeros([2, 2, 4, 5]))


def test_noisy_experts_share_one_draw_and_per_sample_draws_differ():
    """The reference's experts all take the same key: one (ε_in, ε_out) for
    every expert and slot; per-sample sources give each sample its own."""
    from tf_softmoe.layers import noisy_dense
    n, d, h, batch, p = 3, 4, 5, 2, 2
    layer = layers.ExpertMLP(num_experts=n, hidden_units=h, noisy=True, sigma0=0.5)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, n, p, d)).astype(np.float32)
    layer(x)
    draws = {("in", d): rng.normal(size=(batch, d)), ("out", h): rng.normal(size=(batch, h))}
    f = lambda e: np.sign(e) * np.sqrt(np.abs(e))  # noqa: E731
    _, hidden = layer(x, training=True, return_hidden=True,
                      noise=noisy_dense.ExplicitNoise(draws))
    k_mu, k_sigma = layer.kernel_in.numpy(), layer.kernel_in_sigma.numpy()
    b_mu, b_sigma = layer.bias_in.numpy(), layer.bias_in_sigma.numpy()
    for b in range(batch):
        e_in, e_out = f(draws[("in", d)][b]), f(draws[("out", h)][b])
        for e in range(n):
            w = k_mu[e] + k_sigma[e] * np.outer(e_in, e_out)
            expected = np.maximum(x[b, e] @ w + b_mu[e] + b_sigma[e] * e_out, 0)
            np.testing.assert_allclose(hidden[b, e], expected, rtol=1e-5, atol=1e-5)
    shared = noisy_dense.ExplicitNoise({k: v[0] for k, v in draws.items()})
    _, hidden_shared = layer(x, training=True, return_hidden=True, noise=shared)
    np.testing.assert_allclose(hidden_shared[0], hidden[0], rtol=1e-5, atol=1e-5)
