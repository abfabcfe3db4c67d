"""Checks every layer test runs: config round trip, deepcopy, save/load, XLA."""

import copy
import os

import numpy as np
import tensorflow as tf


def wrap_in_model(layer, input_shape, input_dtype=tf.float32):
    """A functional model `Input(input_shape) -> layer` (batch left dynamic)."""
    inputs = tf.keras.Input(input_shape, dtype=input_dtype)
    return tf.keras.Model(inputs, layer(inputs))


def assert_config_round_trip(layer, inputs):
    """from_config(get_config()) rebuilds an equal config and, with the same
    weights, the same outputs."""
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(inputs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(inputs), layer(inputs), rtol=1e-6, atol=1e-6)


def assert_deepcopy_survives(layer, inputs):
    """TF-Agents makes target networks with deepcopy; the copy must be
    independent (its own variables) and compute the same function."""
    clone = copy.deepcopy(layer)
    clone(inputs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(inputs), layer(inputs), rtol=1e-6, atol=1e-6)
    for original, copied in zip(layer.weights, clone.weights):
        assert original is not copied
    if layer.weights:
        layer.weights[0].assign(layer.weights[0] + 1.0)
        assert not np.allclose(layer.weights[0].numpy(), clone.weights[0].numpy())
        layer.weights[0].assign(layer.weights[0] - 1.0)


def assert_save_load_round_trip(model, inputs, tmp_path):
    """`.keras` and SavedModel round trips give identical outputs, without
    custom_objects (the layers are registered)."""
    expected = model(inputs).numpy()
    keras_path = os.path.join(tmp_path, "model.keras")
    model.save(keras_path)
    reloaded = tf.keras.models.load_model(keras_path)
    np.testing.assert_allclose(reloaded(inputs), expected, rtol=1e-6, atol=1e-6)
    saved_model_dir = os.path.join(tmp_path, "saved_model")
    tf.saved_model.save(model, saved_model_dir)
    restored = tf.saved_model.load(saved_model_dir)
    np.testing.assert_allclose(
        restored(tf.constant(inputs)), expected, rtol=1e-6, atol=1e-6)


def assert_xla_matches_eager(fn, *args, atol=1e-5):
    """`tf.function(jit_compile=True)` gives the eager result within atol."""
    eager = tf.nest.map_structure(np.asarray, fn(*args))
    compiled = tf.function(fn, jit_compile=True)
    xla = tf.nest.map_structure(np.asarray, compiled(*args))
    tf.nest.map_structure(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol),
        eager, xla)
