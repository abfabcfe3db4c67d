"""Tokenizers and token aggregation."""

import numpy as np
import pytest
import tensorflow as tf

from tf_softmoe import layers
from tests.layers import layer_checks


def feature_map(h=11, w=11, c=64, batch=2, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, h, w, c)).astype(np.float32)


@pytest.mark.parametrize("kind,kwargs,channels,expected", [
    ("per_conv", {}, 64, (121, 64)),
    ("per_conv", {}, 32, (121, 32)),
    ("per_feat", {}, 64, (64, 121)),
    ("per_sample", {}, 32, (1, 3872)),
    ("per_patch", {"patch_size": 3, "embedding_dim": 32}, 32, (9, 32)),
    ("per_patch", {"patch_size": 2, "embedding": "avg_pool"}, 64, (25, 64)),
    ("shuffled", {"seed": 3}, 64, (121, 64)),
])
def test_paper_shapes(kind, kwargs, channels, expected):
    x = feature_map(c=channels)
    tok = layers.make_tokenizer(kind, **kwargs)
    out = tok(x)
    assert out.shape == (2,) + expected
    assert tok.compute_output_shape(x.shape) == (2,) + expected


def test_per_conv_token_is_the_channel_vector_at_a_position():
    x = feature_map(h=3, w=4, c=5)
    out = layers.PerConvTokenizer()(x).numpy()
    np.testing.assert_array_equal(out[:, 1 * 4 + 2], x[:, 1, 2])


def test_per_feat_token_is_one_channel_map():
    x = feature_map(h=3, w=4, c=5)
    out = layers.PerFeatTokenizer()(x).numpy()
    np.testing.assert_array_equal(out[:, 3], x[:, :, :, 3].reshape(2, 12))


def test_per_patch_avg_pool_by_hand():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    out = layers.PerPatchTokenizer(patch_size=2, embedding="avg_pool")(x).numpy()
    # Patches (0,1,4,5), (2,3,6,7), (8,9,12,13), (10,11,14,15).
    np.testing.assert_allclose(out[0, :, 0], [2.5, 4.5, 10.5, 12.5])


def test_per_patch_conv_embedding_is_linear_over_each_patch():
    x = feature_map(h=6, w=6, c=2, batch=1)
    tok = layers.PerPatchTokenizer(patch_size=3, embedding_dim=4)
    out = tok(x).numpy()
    kernel, bias = (w.numpy() for w in tok.patch_embedding.weights)
    expected = np.einsum("hwc,hwcd->d", x[0, 3:6, 0:3], kernel) + bias
    np.testing.assert_allclose(out[0, 2], expected, rtol=1e-5, atol=1e-5)
    assert len(tok.weights) == 2  # no hidden activation, just the conv


@pytest.mark.parametrize("scope", ["all_values", "per_channel", "positions"])
def test_shuffled_is_a_fixed_permutation_of_the_values(scope):
    x = feature_map(h=4, w=4, c=3)
    tok = layers.ShuffledTokenizer(seed=7, scope=scope)
    out = tok(x).numpy()
    np.testing.assert_array_equal(np.sort(out.reshape(2, -1)), np.sort(x.reshape(2, -1)))
    assert not np.array_equal(out, layers.PerConvTokenizer()(x).numpy())
    np.testing.assert_array_equal(layers.ShuffledTokenizer(seed=7, scope=scope)(x), out)
    assert not np.array_equal(layers.ShuffledTokenizer(seed=8, scope=scope)(x), out)
    if scope != "all_values":  # channel c of a token still comes from channel c
        per_conv = layers.PerConvTokenizer()(x).numpy()
        for c in range(3):
            np.testing.assert_array_equal(np.sort(out[0, :, c]), np.sort(per_conv[0, :, c]))
    if scope == "positions":  # whole tokens move together
        per_conv = layers.PerConvTokenizer()(x).numpy()
        rows = {tuple(r) for r in per_conv[0]}
        assert all(tuple(r) in rows for r in out[0])


@pytest.mark.parametrize("mode,expected", [
    ("flatten", lambda t: t.reshape(2, -1)),
    ("sum", lambda t: t.sum(1)),
    ("mean", lambda t: t.mean(1)),
])
def test_token_aggregation(mode, expected):
    t = feature_map(h=1, w=6, c=4)[:, 0]
    agg = layers.TokenAggregation(mode)
    np.testing.assert_allclose(agg(t), expected(t), rtol=1e-6)
    assert agg.compute_output_shape(t.shape) == expected(t).shape


@pytest.mark.parametrize("layer", [
    layers.PerConvTokenizer(), layers.PerFeatTokenizer(), layers.PerSampleTokenizer(),
    layers.PerPatchTokenizer(patch_size=3, embedding_dim=8),
    layers.PerPatchTokenizer(patch_size=3, embedding="avg_pool"),
    layers.ShuffledTokenizer(seed=1),
])
def test_config_deepcopy_save_load_xla(layer, tmp_path):
    x = feature_map(h=11, w=11, c=8)
    layer(x)
    layer_checks.assert_config_round_trip(layer, x)
    layer_checks.assert_deepcopy_survives(layer, x)
    layer_checks.assert_xla_matches_eager(layer, tf.constant(x))
    fresh = type(layer).from_config(layer.get_config())
    layer_checks.assert_save_load_round_trip(
        layer_checks.wrap_in_model(fresh, (11, 11, 8)), x, str(tmp_path))


def test_aggregation_round_trip(tmp_path):
    t = feature_map(h=1, w=6, c=4)[:, 0]
    layer = layers.TokenAggregation("mean")
    layer_checks.assert_config_round_trip(layer, t)
    layer_checks.assert_save_load_round_trip(
        layer_checks.wrap_in_model(layers.TokenAggregation("sum"), (6, 4)), t,
        str(tmp_path))


def test_unknown_tokenizer_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"per_conv.*Did you mean 'per_conv'"):
        layers.make_tokenizer("perconv")


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"patch_size must be in \[1, 11\]"):
        layers.PerPatchTokenizer(patch_size=12)(tf.zeros([1, 11, 11, 4]))
    with pytest.raises(ValueError, match=r"\[batch, height, width, channels\]"):
        layers.PerConvTokenizer()(tf.zeros([2, 121, 4]))
    with pytest.raises(ValueError, match="embedding must be one of"):
        layers.PerPatchTokenizer(embedding="max")
    with pytest.raises(ValueError, match="mode must be one of"):
        layers.TokenAggregation("max")
    with pytest.raises(ValueError, match="scope must be one of"):
        layers.ShuffledTokenizer(scope="rows")


def test_patch_embedding_is_lecun_normal_as_flax_conv():
    tok = layers.PerPatchTokenizer(patch_size=3, embedding_dim=256)
    tok(tf.zeros([1, 12, 12, 64]))
    conv = tok.patch_embedding
    assert isinstance(conv.kernel_initializer, tf.keras.initializers.LecunNormal)
    np.testing.assert_array_equal(conv.bias.numpy(), 0.0)
    fan_in = 3 * 3 * 64
    assert np.std(conv.kernel.numpy()) == pytest.approx(np.sqrt(1 / fan_in), rel=0.05)
