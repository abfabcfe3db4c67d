"""Factorised Gaussian noisy dense layer (NoisyNet)."""

import math

import tensorflow as tf

from tf_softmoe.layers import _common


def factorised_noise(shape, dtype):
    """f(ε) = sign(ε)·sqrt(|ε|), ε ~ N(0, 1) (Fortunato et al., eq. 11)."""
    eps = tf.random.normal(shape, dtype=dtype)
    return tf.sign(eps) * tf.sqrt(tf.abs(eps))


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class NoisyDense(tf.keras.layers.Layer):
    """Dense layer with factorised Gaussian parameter noise.

    With ε_in ~ f(N(0, I_d)), ε_out ~ f(N(0, I_u)) drawn afresh on every call
    made with `training=True`:

        W = μ_W + σ_W ⊙ (ε_in ε_outᵀ),   b = μ_b + σ_b ⊙ ε_out
        y = activation(x W + b)

    With `training=False` (or None) the noise is off: y = activation(x μ_W + μ_b).
    Initialisation: μ ~ U(-1/√d, 1/√d), σ = σ0/√d, d = fan-in. σ0 = 0.5 is the
    value of Fortunato et al.; the Dopamine/MoE reference code uses 0.1.
    The noise is shared by every row of the batch, as in the paper.

    Reference: Fortunato et al., "Noisy Networks for Exploration", ICLR 2018.

    Args:
      units: output width.
      sigma0: σ0 of the noise scale initialiser (> 0).
      activation: optional activation.
      use_bias: whether to add the noisy bias.
    """

    def __init__(self, units, sigma0=0.5, activation=None, use_bias=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.units = _common.check_positive_int("units", units)
        self.sigma0 = _common.check_positive_float("sigma0", sigma0)
        self.activation = tf.keras.activations.get(activation)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank is None or input_shape[-1] is None:
            raise ValueError(
                f"{self.name} needs a known last dimension, received {input_shape}.")
        fan_in = int(input_shape[-1])
        bound = 1.0 / math.sqrt(fan_in)
        sigma_init = tf.keras.initializers.Constant(self.sigma0 / math.sqrt(fan_in))
        self.kernel_mu = self.add_weight(
            "kernel_mu", shape=(fan_in, self.units),
            initializer=tf.keras.initializers.RandomUniform(-bound, bound))
        self.kernel_sigma = self.add_weight(
            "kernel_sigma", shape=(fan_in, self.units), initializer=sigma_init)
        if self.use_bias:
            self.bias_mu = self.add_weight(
                "bias_mu", shape=(self.units,),
                initializer=tf.keras.initializers.RandomUniform(-bound, bound))
            self.bias_sigma = self.add_weight(
                "bias_sigma", shape=(self.units,), initializer=sigma_init)
        super().build(input_shape)

    def call(self, inputs, training=None):
        dtype = inputs.dtype
        outputs = tf.tensordot(inputs, tf.cast(self.kernel_mu, dtype), axes=1)
        if self.use_bias:
            outputs = outputs + tf.cast(self.bias_mu, dtype)
        if training:
            # x (σ ⊙ ε_in ε_outᵀ) = ((x ⊙ ε_in) σ) ⊙ ε_out: the same noisy layer
            # without forming the [d, units] noisy matrix (one extra matmul
            # instead of three passes over the kernel).
            eps_in = factorised_noise([self.kernel_mu.shape[0]], dtype)
            eps_out = factorised_noise([self.units], dtype)
            noise = tf.tensordot(inputs * eps_in, tf.cast(self.kernel_sigma, dtype), axes=1)
            outputs = outputs + noise * eps_out
            if self.use_bias:
                outputs = outputs + tf.cast(self.bias_sigma, dtype) * eps_out
        return self.activation(outputs) if self.activation is not None else outputs

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.units])

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units,
            "sigma0": self.sigma0,
            "activation": tf.keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
        })
        return config
