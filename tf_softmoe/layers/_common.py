"""Shape checks, initialisers and dtype helpers shared by the layers."""

import math

import tensorflow as tf

PACKAGE = "tf_softmoe"


def token_shape(input_shape, layer_name):
    """Validates a `[batch, tokens, dim]` input shape and returns (m, d).

    Args:
      input_shape: a `tf.TensorShape` or list.
      layer_name: the layer's name, used in the error.

    Returns:
      (num_tokens, token_dim) as Python ints.

    Raises:
      ValueError: the rank is not 3, or tokens/dim are unknown.
    """
    shape = tf.TensorShape(input_shape)
    if shape.rank != 3 or shape[1] is None or shape[2] is None:
        raise ValueError(
            f"{layer_name} expects tokens of shape [batch, tokens, dim] with known "
            f"tokens and dim, but received {shape}. Tokenize a [batch, h, w, C] "
            "feature map first (e.g. tf_softmoe.layers.PerConvTokenizer).")
    return int(shape[1]), int(shape[2])


def feature_map_shape(input_shape, layer_name):
    """Validates a `[batch, h, w, C]` input shape and returns (h, w, C)."""
    shape = tf.TensorShape(input_shape)
    if shape.rank != 4 or any(s is None for s in shape[1:]):
        raise ValueError(
            f"{layer_name} expects a feature map of shape [batch, height, width, "
            f"channels] with known height, width and channels, but received {shape}.")
    return int(shape[1]), int(shape[2]), int(shape[3])


def check_positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def check_positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


def slots_per_expert(num_tokens, num_experts, capacity_factor, num_slots):
    """p = ceil(m * capacity_factor / n) unless `num_slots` overrides it."""
    if num_slots is not None:
        return num_slots
    return max(1, int(math.ceil(num_tokens * capacity_factor / num_experts)))


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class PerExpertGlorotUniform(tf.keras.initializers.Initializer):
    """Glorot-uniform over the last two axes of a stacked `[n, fan_in, fan_out]`.

    Each expert gets U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) computed on
    its own 2-D kernel. Keras's GlorotUniform on the stacked 3-D tensor would
    multiply both fans by n and shrink every expert's scale by sqrt(n).
    """

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=None, **kwargs):
        dtype = tf.as_dtype(dtype or tf.float32)
        fan_in, fan_out = int(shape[-2]), int(shape[-1])
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        if self.seed is None:
            return tf.random.uniform(shape, -limit, limit, dtype=dtype)
        return tf.random.stateless_uniform(
            shape, seed=[self.seed, 0], minval=-limit, maxval=limit, dtype=dtype)

    def get_config(self):
        return {"seed": self.seed}
