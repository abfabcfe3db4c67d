"""Tests of tf_softmoe.metrics.diagnostics.

Hand-worked values, NumPy references and XLA == eager checks.
"""

import numpy as np
import pytest
import tensorflow as tf

from tf_softmoe.metrics import diagnostics

# ---------------------------------------------------------------------------
# NumPy references, written from the formulas in SPEC section 6.


def np_dormant_fraction(activations, tau,
                        epsilon=diagnostics.DORMANT_EPSILON):
    units = activations.shape[-1]
    unit_mean = np.abs(activations).reshape(-1, units).mean(axis=0)
    scores = unit_mean / max(unit_mean.mean(), epsilon)
    return float(np.mean(scores <= tau))


def np_srank(features, delta):
    sigma = np.linalg.svd(features, compute_uv=False)
    ratios = np.cumsum(sigma) / sigma.sum()
    return int(np.argmax(ratios >= 1.0 - delta)) + 1


def np_threshold_count(features, threshold):
    sigma = np.linalg.svd(features, compute_uv=False)
    return int(np.sum(sigma / sigma.max() > threshold))


def np_expert_gate_statistics(combine):
    batch, tokens, experts, slots = combine.shape
    gate = combine.sum(axis=3).mean(axis=(0, 1))
    flat = combine.reshape(batch, tokens, experts * slots)
    top = flat.argmax(axis=-1) // slots
    counts = np.bincount(top.ravel(), minlength=experts).astype(np.float64)
    return gate, counts, counts / batch


def xla(function, **static_kwargs):
    """`function` compiled with XLA, static keyword arguments bound."""
    return tf.function(lambda *args: function(*args, **static_kwargs),
                       jit_compile=True)


def matrix_with_singular_values(sigma, rows, cols, seed=0):
    """U diag(sigma) V^T, U [rows, k] and V [cols, k] random orthonormal."""
    rng = np.random.default_rng(seed)
    k = len(sigma)
    u, _ = np.linalg.qr(rng.normal(size=(rows, k)))
    v, _ = np.linalg.qr(rng.normal(size=(cols, k)))
    return (u * np.asarray(sigma)) @ v.T


# ---------------------------------------------------------------------------
# Dormant units.

# 4 samples x 5 units. mean|a| per unit: 0, 1, 0.01, 2, (3+1+0+2)/4 = 1.5.
# Layer mean (0 + 1 + 0.01 + 2 + 1.5)/5 = 0.902, so the scores are
# 0, 1.1086, 0.011086, 2.2173, 1.6630.
HAND_ACTIVATIONS = np.array([[0.0, 1.0, 0.02, 2.0, -3.0],
                             [0.0, 1.0, 0.00, 2.0, 1.0],
                             [0.0, 1.0, 0.02, 2.0, 0.0],
                             [0.0, 1.0, 0.00, 2.0, 2.0]], dtype=np.float32)


def test_dormant_scores_hand_values():
    scores = diagnostics.dormant_neuron_scores(HAND_ACTIVATIONS).numpy()
    np.testing.assert_allclose(
        scores, np.array([0.0, 1.0, 0.01, 2.0, 1.5]) / 0.902, rtol=1e-6)


@pytest.mark.parametrize("tau, expected", [
    (0.0, 1 / 5),     # only unit 0 never fires
    (0.025, 2 / 5),   # unit 2 scores 0.011 <= 0.025 (ReDo threshold)
    (1.2, 3 / 5),     # unit 1 (1.109) joins
    (10.0, 1.0),
])
def test_dormant_fraction_hand_values(tau, expected):
    fraction = diagnostics.dormant_fraction(HAND_ACTIVATIONS, tau)
    assert fraction.dtype == tf.float32
    assert float(fraction) == pytest.approx(expected)


def test_dormant_at_tau_zero_means_never_active():
    # A unit active on a single sample, however weakly, is not dormant at
    # tau = 0.
    activations = np.zeros((8, 3), np.float32)
    activations[:, 1] = 5.0
    activations[3, 2] = 1e-6
    fraction = diagnostics.dormant_fraction(activations, 0.0)
    assert float(fraction) == pytest.approx(1 / 3)


def test_dormant_fraction_of_a_silent_layer_is_one():
    silent = np.zeros((4, 6), np.float32)
    assert float(diagnostics.dormant_fraction(silent, 0.0)) == 1.0


def test_dormant_fraction_flattens_leading_axes():
    rng = np.random.default_rng(0)
    activations = np.maximum(rng.normal(size=(4, 9, 16)), 0.0)
    activations = activations.astype(np.float32)
    activations[..., :5] = 0.0
    activations[..., 5:8] *= 0.001
    for tau in (0.0, 0.025, 0.1):
        expected = np_dormant_fraction(activations, tau)
        fraction = diagnostics.dormant_fraction(activations, tau)
        assert float(fraction) == pytest.approx(expected)
        flat_fraction = diagnostics.dormant_fraction(
            activations.reshape(36, 16), tau)
        assert float(flat_fraction) == pytest.approx(expected)
    assert np_dormant_fraction(activations, 0.0) == 5 / 16
    assert np_dormant_fraction(activations, 0.025) == 8 / 16


def test_dormant_fraction_xla_equals_eager():
    rng = np.random.default_rng(1)
    activations = np.maximum(rng.normal(size=(32, 64)), 0.0)
    activations = activations.astype(np.float32)
    activations[:, :10] = 0.0
    activations[:, 10:20] *= 0.02
    for tau in (0.0, 0.025):
        eager = diagnostics.dormant_fraction(activations, tau)
        compiled = xla(diagnostics.dormant_fraction, tau=tau)(activations)
        assert float(compiled) == float(eager)
        assert float(eager) == pytest.approx(
            np_dormant_fraction(activations, tau))


def test_dormant_rejects_vectors():
    with pytest.raises(ValueError, match=r"\[batch, ..., units\]"):
        diagnostics.dormant_fraction(np.ones(5, np.float32))


# ---------------------------------------------------------------------------
# Feature rank.

# sigma sums to 18.652; the cumulative sums 10, 15, 17, 18, 18.5, 18.62,
# 18.65, 18.652 give ratios 0.5361, 0.8042, 0.9114, 0.9650, 0.9918, 0.9983,
# 0.9999, 1.
KNOWN_SIGMA = [10.0, 5.0, 2.0, 1.0, 0.5, 0.12, 0.03, 0.002]
KNOWN_FEATURES = matrix_with_singular_values(KNOWN_SIGMA, rows=16, cols=12)


@pytest.mark.parametrize("method", ["gram", "svd"])
@pytest.mark.parametrize("delta, expected", [
    (0.5, 1),     # 0.5361 >= 0.5
    (0.1, 3),     # 0.9114 >= 0.9
    (0.01, 5),    # 0.9650 < 0.99 <= 0.9918
    (0.001, 7),   # 0.9983 < 0.999 <= 0.9999
])
def test_srank_known_singular_values(delta, expected, method):
    features = KNOWN_FEATURES.astype(np.float32)
    np.testing.assert_allclose(
        diagnostics.singular_values(features, method=method).numpy(),
        KNOWN_SIGMA + [0.0] * 4, atol=1e-5)
    rank = diagnostics.srank(features, delta, method=method)
    assert rank.dtype == tf.int32
    assert int(rank) == expected == np_srank(KNOWN_FEATURES, delta)


@pytest.mark.parametrize("method", ["gram", "svd"])
@pytest.mark.parametrize("threshold, expected", [
    (1e-4, 8),    # sigma > 0.001: the 8 non-zero values, not the 4 zeros
    (0.001, 7),   # sigma > 0.01
    (0.01, 6),    # sigma > 0.1
    (0.06, 4),    # sigma > 0.6
    (0.3, 2),     # sigma > 3
])
def test_threshold_count_known_singular_values(threshold, expected, method):
    count = diagnostics.singular_value_threshold_count(
        KNOWN_FEATURES.astype(np.float32), threshold, method=method)
    assert count.dtype == tf.int32
    assert int(count) == expected
    assert expected == np_threshold_count(KNOWN_FEATURES, threshold)


def test_srank_matches_numpy_on_random_features():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(32, 20)) * np.geomspace(1, 1e-3, 20)
    features = features.astype(np.float32)
    for delta in (0.01, 0.1):
        expected = np_srank(features.astype(np.float64), delta)
        for method in ("gram", "svd"):
            rank = diagnostics.srank(features, delta, method=method)
            assert int(rank) == expected


def test_gram_method_on_tall_and_wide_matrices():
    for rows, cols in ((16, 12), (12, 16)):
        features = matrix_with_singular_values(KNOWN_SIGMA, rows, cols,
                                               seed=3)
        sigma = diagnostics.singular_values(features, method="gram")
        np.testing.assert_allclose(sigma.numpy()[:8], KNOWN_SIGMA, rtol=1e-6)
        assert int(diagnostics.srank(features, 0.01, method="gram")) == 5
        count = diagnostics.singular_value_threshold_count(
            features, 0.01, method="gram")
        assert int(count) == 6


def test_singular_values_keep_the_input_dtype():
    features = KNOWN_FEATURES.astype(np.float32)
    assert diagnostics.singular_values(features).dtype == tf.float32
    assert diagnostics.singular_values(KNOWN_FEATURES).dtype == tf.float64


@pytest.mark.parametrize("method", ["svd", "gram"])
def test_rank_of_zero_features_is_zero(method):
    zeros = np.zeros((8, 4), np.float32)
    assert int(diagnostics.srank(zeros, method=method)) == 0
    count = diagnostics.singular_value_threshold_count(zeros, 0.01,
                                                       method=method)
    assert int(count) == 0


def _all_rank_statistics(features, method):
    count = diagnostics.singular_value_threshold_count
    return (diagnostics.srank(features, 0.01, method=method),
            diagnostics.srank(features, 0.1, method=method),
            count(features, 0.01, method=method),
            count(features, 0.1, method=method),
            diagnostics.singular_values(features, method=method))


# XLA's CPU SVD is slow to compile and run on wide matrices, so the 'svd'
# check uses a small one; the default 'gram' method is checked at the size of
# SoftMoE's flattened tokens (121 tokens x 64 channels).
@pytest.mark.parametrize("method, shape",
                         [("gram", (32, 7744)), ("svd", (8, 6))])
def test_rank_xla_equals_eager(method, shape):
    rng = np.random.default_rng(4)
    features = rng.normal(size=shape) * np.geomspace(1, 1e-2, shape[1])
    features = features.astype(np.float32)
    eager = _all_rank_statistics(features, method)
    compiled = xla(_all_rank_statistics, method=method)(features)
    for index in range(4):
        assert int(compiled[index]) == int(eager[index])
    np.testing.assert_allclose(compiled[4].numpy(), eager[4].numpy(),
                               rtol=1e-4, atol=1e-5)
    assert int(eager[0]) == np_srank(features.astype(np.float64), 0.01)


def test_rank_with_batch_unknown_at_trace_time():
    # A tf.function traced for any batch size: the Gram route cannot pick the
    # smaller side statically, uses F F^T, and must still give the same rank
    # for a batch smaller (12) or larger (16) than dim (12 / 8).
    for rows, cols in ((12, 16), (16, 8)):
        features = matrix_with_singular_values(KNOWN_SIGMA[:6], rows, cols,
                                               seed=5).astype(np.float32)
        traced = tf.function(
            lambda x: (diagnostics.srank(x, 0.01),
                       diagnostics.singular_value_threshold_count(x, 0.01)),
            input_signature=[tf.TensorSpec([None, cols], tf.float32)],
            jit_compile=True)
        rank, count = traced(features)
        # KNOWN_SIGMA[:6] sums to 18.62: ratios 0.5371, 0.8056, 0.9130,
        # 0.9667, 0.9936 -> srank_0.01 = 5; sigma > 0.1 -> 6 values.
        assert int(rank) == 5 == np_srank(features.astype(np.float64), 0.01)
        assert int(count) == 6


def test_rank_rejects_non_matrices():
    with pytest.raises(ValueError, match=r"\[batch, dim\]"):
        diagnostics.srank(np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="'gram' or 'svd'"):
        diagnostics.singular_values(np.ones((2, 3), np.float32),
                                    method="qr")


# ---------------------------------------------------------------------------
# Expert utilisation.

# [batch 2, tokens 3, experts 2, slots 2]; each row lists the weights of
# (e0s0, e0s1, e1s0, e1s1).
HAND_COMBINE = np.array([
    [[0.40, 0.10, 0.30, 0.20],    # expert sums 0.5 / 0.5, top slot in e0
     [0.10, 0.10, 0.70, 0.10],    # 0.2 / 0.8, top in e1
     [0.30, 0.30, 0.35, 0.05]],   # 0.6 / 0.4, yet the top weight is in e1
    [[0.05, 0.05, 0.05, 0.85],    # 0.1 / 0.9, top in e1
     [0.60, 0.20, 0.10, 0.10],    # 0.8 / 0.2, top in e0
     [0.20, 0.20, 0.30, 0.30]],   # 0.4 / 0.6, tie inside e1 -> e1
], dtype=np.float32).reshape(2, 3, 2, 2)


def test_expert_gate_statistics_hand_values():
    stats = diagnostics.expert_gate_statistics(HAND_COMBINE)
    # gate e0 = (0.5 + 0.2 + 0.6 + 0.1 + 0.8 + 0.4)/6 = 2.6/6; e1 = 3.4/6.
    np.testing.assert_allclose(stats.gate.numpy(), [2.6 / 6, 3.4 / 6],
                               rtol=1e-6)
    # Top slots: e0 for (b0,t0) and (b1,t1); e1 for the other four tokens.
    np.testing.assert_array_equal(stats.token_count.numpy(), [2.0, 4.0])
    np.testing.assert_array_equal(stats.token_count_per_sample.numpy(),
                                  [1.0, 2.0])
    assert stats.gate.dtype == stats.token_count.dtype == tf.float32


def test_expert_gate_statistics_matches_numpy_and_xla():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(4, 6, 3 * 2)).astype(np.float32)
    weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    combine = weights.reshape(4, 6, 3, 2)
    gate, counts, per_sample = np_expert_gate_statistics(combine)
    eager = diagnostics.expert_gate_statistics(combine)
    compiled = xla(diagnostics.expert_gate_statistics)(combine)
    for stats in (eager, compiled):
        np.testing.assert_allclose(stats.gate.numpy(), gate, rtol=1e-5)
        np.testing.assert_array_equal(stats.token_count.numpy(), counts)
        np.testing.assert_allclose(stats.token_count_per_sample.numpy(),
                                   per_sample)
    assert float(tf.reduce_sum(eager.gate)) == pytest.approx(1.0, abs=1e-5)
    assert float(tf.reduce_sum(eager.token_count)) == 4 * 6


def test_expert_gate_statistics_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\[batch, tokens, experts, slots"):
        diagnostics.expert_gate_statistics(np.ones((2, 3, 4), np.float32))


# ---------------------------------------------------------------------------
# Norms and moments.


def test_parameter_norm_hand_value_and_xla():
    variables = [tf.Variable([[3.0, 0.0], [0.0, 0.0]]), tf.Variable([4.0])]
    assert float(diagnostics.parameter_norm(variables)) == pytest.approx(5.0)
    compiled = tf.function(lambda: diagnostics.parameter_norm(variables),
                           jit_compile=True)
    assert float(compiled()) == pytest.approx(5.0)


def test_parameter_norm_of_a_keras_layer():
    layer = tf.keras.layers.Dense(7, bias_initializer="ones")
    layer.build((None, 5))
    expected = np.sqrt(sum(np.sum(v.numpy().astype(np.float64) ** 2)
                           for v in layer.trainable_variables))
    norm = diagnostics.parameter_norm(layer.trainable_variables)
    assert float(norm) == pytest.approx(expected, rel=1e-6)


def test_parameter_norm_rejects_empty():
    with pytest.raises(ValueError, match="at least one variable"):
        diagnostics.parameter_norm([])


def test_q_and_td_statistics_hand_values_and_xla():
    q_values = np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)
    td_errors = np.array([1.0, -1.0, 2.0, 2.0], np.float32)
    implementations = [
        (diagnostics.q_statistics, diagnostics.td_error_statistics),
        (xla(diagnostics.q_statistics), xla(diagnostics.td_error_statistics)),
    ]
    for q_fn, td_fn in implementations:
        q_stats = q_fn(q_values)
        # mean 12/4 = 3; squared deviations 4, 1, 0, 9 -> std sqrt(14/4).
        assert float(q_stats.mean) == pytest.approx(3.0)
        assert float(q_stats.std) == pytest.approx(np.sqrt(3.5))
        td_stats = td_fn(td_errors)
        # mean 4/4 = 1; squared deviations 0, 4, 1, 1 -> variance 6/4.
        assert float(td_stats.mean) == pytest.approx(1.0)
        assert float(td_stats.variance) == pytest.approx(1.5)
