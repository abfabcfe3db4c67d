"""NoisyDense: factorised Gaussian noise in training, mean weights otherwise."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tf_softmoe import layers
from tests.layers import layer_checks


def test_noise_differs_between_training_calls_and_vanishes_at_inference():
    layer = layers.NoisyDense(8, sigma0=0.5)
    x = tf.random.normal([4, 6])
    a, b = layer(x, training=True), layer(x, training=True)
    assert not np.allclose(a, b)
    mean = x.numpy() @ layer.kernel_mu.numpy() + layer.bias_mu.numpy()
    np.testing.assert_allclose(layer(x, training=False), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer(x), mean, rtol=1e-5, atol=1e-6)


def test_noise_is_factorised_and_shared_across_the_batch():
    layer = layers.NoisyDense(3, sigma0=0.5, use_bias=False)
    layer.build((None, 2))
    layer.kernel_mu.assign(np.zeros((2, 3), np.float32))
    layer.kernel_sigma.assign(np.ones((2, 3), np.float32))
    # With μ=0 and σ=1, W = ε_in ε_outᵀ: rank one, identical for every row.
    eye = tf.eye(2)
    w = layer(tf.concat([eye, eye], axis=0), training=True).numpy()
    np.testing.assert_allclose(w[:2], w[2:])
    assert np.linalg.matrix_rank(w[:2], tol=1e-5) == 1


def test_initialisation():
    layer = layers.NoisyDense(16, sigma0=0.1)
    layer.build((None, 25))
    assert np.abs(layer.kernel_mu.numpy()).max() <= (1 / math.sqrt(25)) * (1 + 1e-6)
    np.testing.assert_allclose(layer.kernel_sigma.numpy(), 0.1 / 5)
    np.testing.assert_allclose(layer.bias_sigma.numpy(), 0.1 / 5)
    assert layer.compute_output_shape((None, 25)) == (None, 16)


def test_config_deepcopy_save_load_xla(tmp_path):
    x = np.random.default_rng(0).normal(size=(3, 7)).astype(np.float32)
    layer = layers.NoisyDense(5, sigma0=0.1, activation="relu")
    layer(x)
    assert layer.get_config()["sigma0"] == 0.1
    layer_checks.assert_config_round_trip(layer, x)
    layer_checks.assert_deepcopy_survives(layer, x)
    layer_checks.assert_xla_matches_eager(layer, tf.constant(x))
    layer_checks.assert_save_load_round_trip(
        layer_checks.wrap_in_model(layers.NoisyDense(5), (7,)), x, str(tmp_path))
    noisy_xla = tf.function(lambda t: layer(t, training=True), jit_compile=True)
    assert not np.allclose(noisy_xla(x), noisy_xla(x))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="sigma0"):
        layers.NoisyDense(4, sigma0=0)
    with pytest.raises(ValueError, match="units"):
        layers.NoisyDense(0)


def test_factorised_and_matrix_forms_agree_with_the_same_noise():
    # Few rows take ((x ⊙ ε_in) σ) ⊙ ε_out, many rows the noisy matrix; with
    # the same seed both draw the same ε and must give the same layer.
    from tf_softmoe.layers import noisy_dense
    layer = layers.NoisyDense(6, sigma0=0.5)
    rng = np.random.default_rng(3)
    few = rng.normal(size=(2, 5)).astype(np.float32)
    many = np.concatenate(
        [few, rng.normal(size=(noisy_dense.FACTORISED_MAX_ROWS, 5)).astype(np.float32)])
    assert noisy_dense.static_rows(tf.constant(few)) <= noisy_dense.FACTORISED_MAX_ROWS
    assert noisy_dense.static_rows(tf.constant(many)) > noisy_dense.FACTORISED_MAX_ROWS
    layer(few)
    tf.random.set_seed(11)
    y_few = layer(few, training=True).numpy()
    tf.random.set_seed(11)
    y_many = layer(many, training=True).numpy()
    np.testing.assert_allclose(y_few, y_many[:2], rtol=1e-5, atol=1e-6)
    # And both equal x W + b with W, b formed by hand from that noise.
    tf.random.set_seed(11)
    eps_in = noisy_dense.factorised_noise([5], tf.float32).numpy()
    eps_out = noisy_dense.factorised_noise([6], tf.float32).numpy()
    w = layer.kernel_mu.numpy() + layer.kernel_sigma.numpy() * np.outer(eps_in, eps_out)
    b = layer.bias_mu.numpy() + layer.bias_sigma.numpy() * eps_out
    np.testing.assert_allclose(y_few, few @ w + b, rtol=1e-5, atol=1e-5)


def test_static_rows_counts_an_unknown_batch_as_one():
    from tf_softmoe.layers import noisy_dense
    spec = tf.TensorSpec([None, 121, 8])
    rows = []
    tf.function(lambda t: rows.append(noisy_dense.static_rows(t)) or t,
                input_signature=[spec]).get_concrete_function()
    assert rows == [121]


def _f(eps):
    return np.sign(eps) * np.sqrt(np.abs(eps))


def test_explicit_noise_per_sample_gives_every_row_its_own_weights():
    from tf_softmoe.layers import noisy_dense
    layer = layers.NoisyDense(4, sigma0=0.5)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5)).astype(np.float32)
    layer(x)
    draws = {("in", 5): rng.normal(size=(3, 5)), ("out", 4): rng.normal(size=(3, 4))}
    y = layer(x, training=True, noise=noisy_dense.ExplicitNoise(draws)).numpy()
    mu, sigma = layer.kernel_mu.numpy(), layer.kernel_sigma.numpy()
    for b in range(3):
        e_in, e_out = _f(draws[("in", 5)][b]), _f(draws[("out", 4)][b])
        w = mu + sigma * np.outer(e_in, e_out)
        bias = layer.bias_mu.numpy() + layer.bias_sigma.numpy() * e_out
        np.testing.assert_allclose(y[b], x[b] @ w + bias, rtol=1e-5, atol=1e-6)
    shared = {("in", 5): draws[("in", 5)][0], ("out", 4): draws[("out", 4)][0]}
    y0 = layer(x, training=True, noise=noisy_dense.ExplicitNoise(shared)).numpy()
    np.testing.assert_allclose(y0[0], y[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(KeyError, match="fan-in 5"):
        layer(x, training=True, noise=noisy_dense.ExplicitNoise({("out", 4): shared[("out", 4)]}))


def test_seeded_noise_repeats_per_seed_and_differs_per_sample():
    from tf_softmoe.layers import noisy_dense
    layer = layers.NoisyDense(6, sigma0=1.0)
    x = np.tile(np.random.default_rng(1).normal(size=(1, 7)).astype(np.float32), [4, 1])
    layer(x)
    same = [layer(x, training=True, noise=noisy_dense.SeededNoise([3, 4], batch_size=4))
            for _ in range(2)]
    np.testing.assert_allclose(same[0], same[1])
    rows = same[0].numpy()
    assert not np.allclose(rows[0], rows[1])  # identical inputs, own noise per row
    shared = layer(x, training=True, noise=noisy_dense.SeededNoise([3, 4])).numpy()
    np.testing.assert_allclose(shared, np.tile(shared[:1], [4, 1]))
    with pytest.raises(ValueError, match="seed"):
        noisy_dense.SeededNoise([1, 2, 3])


def test_seeded_draws_follow_the_seed_under_xla():
    # TensorFlow's stateful random ops ignore every seed under XLA; within
    # seeded_draws the noise follows the [2] seed each call is given.
    from tf_softmoe.layers import noisy_dense  # pylint: disable=import-outside-toplevel
    layer = layers.NoisyDense(5)
    x = tf.ones([2, 3])
    layer(x)

    def noisy(seed):
        with noisy_dense.seeded_draws(seed):
            return layer(x, training=True), noisy_dense.fresh_seed(), noisy_dense.fresh_seed()

    for compiled in (tf.function(noisy, jit_compile=True), tf.function(noisy)):
        out, seed_a, seed_b = compiled(tf.constant([3, 4]))
        again, _, _ = compiled(tf.constant([3, 4]))
        other, _, _ = compiled(tf.constant([3, 5]))
        np.testing.assert_array_equal(out.numpy(), again.numpy())
        assert not np.allclose(out.numpy(), other.numpy())
        assert not np.array_equal(seed_a.numpy(), seed_b.numpy())  # each take is new
    with pytest.raises(ValueError, match=r"\[2\] integer seed"):
        with noisy_dense.seeded_draws(tf.constant([1.0, 2.0])):
            pass
