"""ExpertChoice: experts pick their top tokens; Keras contract."""

import numpy as np
import pytest
import tensorflow as tf

from tf_softmoe import layers
from tests.layers import layer_checks


def test_each_expert_takes_its_top_tokens_and_scales_by_its_score():
    """3 tokens, 2 experts, capacity ceil(3/2)=2. Router = identity on d=2.
    Expert 0 prefers tokens with a large feature 0, expert 1 feature 1."""
    x = np.array([[[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]]], np.float32)
    layer = layers.ExpertChoice(num_experts=2, expert_hidden_units=2)
    layer(x)
    layer.router.set_weights([np.eye(2, dtype=np.float32)])
    eye = np.eye(2, dtype=np.float32)
    layer.experts.set_weights([np.stack([eye, eye]), np.zeros((2, 2), np.float32),
                               np.stack([eye, 2 * eye]), np.zeros((2, 2), np.float32)])
    scores = tf.nn.softmax(x[0], axis=-1).numpy()  # [m, n]
    # Expert 0: scores[:,0] = (.881, .5, .047) → tokens 0, 1.
    # Expert 1: scores[:,1] = (.119, .5, .953) → tokens 2, 1.
    expected = np.zeros((3, 2), np.float32)
    expected[0] = scores[0, 0] * x[0, 0]
    expected[1] = scores[1, 0] * x[0, 1] + scores[1, 1] * 2 * x[0, 1]
    expected[2] = scores[2, 1] * 2 * x[0, 2]
    out, routing = layer(x, return_routing=True)
    np.testing.assert_allclose(out.numpy()[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(routing["unrouted_fraction"], 0.0)
    np.testing.assert_allclose(routing["gate"], scores.mean(0), atol=1e-6)


def test_unpicked_tokens_are_zero():
    x = np.array([[[5.0, 0.0], [4.0, 0.0], [0.0, 0.1]]], np.float32)
    # Seeded: with unseeded weights, all 4 ReLU units of the expert are off
    # for a picked token about one time in 16, which zeroes its row too.
    tf.keras.utils.set_random_seed(0)
    layer = layers.ExpertChoice(num_experts=1, expert_hidden_units=4,
                                capacity_factor=0.5)
    layer(x)
    layer.router.set_weights([np.array([[1.0], [0.0]], np.float32)])
    assert layer.capacity == 2
    # One expert: softmax over one expert is 1 for all; top-2 by score ties,
    # so only the count matters: exactly one token is left out.
    out, routing = layer(x, return_routing=True)
    zero_rows = np.all(out.numpy()[0] == 0.0, axis=-1)
    assert zero_rows.sum() == 1
    np.testing.assert_allclose(routing["unrouted_fraction"], 1 / 3, atol=1e-6)


def test_shapes_and_counts():
    layer = layers.ExpertChoice(num_experts=4, expert_hidden_units=512)
    assert layer(tf.zeros([2, 121, 64])).shape == (2, 121, 64)
    assert layer.capacity == 31
    assert layer.count_params() == 64 * 4 + 4 * (64 * 512 * 2 + 512 + 64)


def test_config_deepcopy_save_load_xla(tmp_path):
    x = np.random.default_rng(1).normal(size=(2, 30, 8)).astype(np.float32)
    layer = layers.ExpertChoice(3, expert_hidden_units=16)
    layer(x)
    layer_checks.assert_config_round_trip(layer, x)
    layer_checks.assert_deepcopy_survives(layer, x)
    layer_checks.assert_xla_matches_eager(layer, tf.constant(x))
    layer_checks.assert_save_load_round_trip(
        layer_checks.wrap_in_model(layers.ExpertChoice(3, expert_hidden_units=16), (30, 8)),
        x, str(tmp_path))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="capacity_factor"):
        layers.ExpertChoice(2, capacity_factor=0)
    with pytest.raises(ValueError, match=r"\[batch, tokens, dim\]"):
        layers.ExpertChoice(2)(tf.zeros([2, 3, 4, 5]))
