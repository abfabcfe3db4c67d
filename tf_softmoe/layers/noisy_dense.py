"""Factorised Gaussian noisy dense layer (NoisyNet)."""

import math

import tensorflow as tf

from tf_softmoe.layers import _common


# Up to this many input rows (all dimensions but the last) the noise is
# applied as ((x ⊙ ε_in) σ) ⊙ ε_out, beyond it through the [d, units] noisy
# matrix: benchmarks/noisy_dense_bench.py has the two even at 32 rows and the
# matrix 1.8× faster at 3 872 (a tokenized training batch).
FACTORISED_MAX_ROWS = 32


def static_rows(inputs):
    """Rows of `inputs` known when tracing; an unknown dimension counts as 1
    (a policy's batch dimension, one observation at a time)."""
    rows = 1
    for dim in inputs.shape[:-1]:
        rows *= 1 if dim is None else int(dim)
    return rows


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
        kernel_mu = tf.cast(self.kernel_mu, dtype)
        bias = tf.cast(self.bias_mu, dtype) if self.use_bias else None
        if not training:
            outputs = tf.tensordot(inputs, kernel_mu, axes=1)
        else:
            eps_in = factorised_noise([self.kernel_mu.shape[0]], dtype)
            eps_out = factorised_noise([self.units], dtype)
            kernel_sigma = tf.cast(self.kernel_sigma, dtype)
            if static_rows(inputs) <= FACTORISED_MAX_ROWS:
                # x (μ + σ ⊙ ε_in ε_outᵀ) = x μ + ((x ⊙ ε_in) σ) ⊙ ε_out: no
                # [d, units] noisy matrix, one extra (thin) matmul instead.
                outputs = (tf.tensordot(inputs, kernel_mu, axes=1)
                           + tf.tensordot(inputs * eps_in, kernel_sigma, axes=1)
                           * eps_out)
            else:
                # Many rows (token inputs): a second matmul would cost per
                # row; forming the noisy matrix costs per weight, once.
                kernel = kernel_mu + kernel_sigma * (eps_in[:, None] * eps_out[None, :])
                outputs = tf.tensordot(inputs, kernel, axes=1)
            if self.use_bias:
                bias = bias + tf.cast(self.bias_sigma, dtype) * eps_out
        if self.use_bias:
            outputs = outputs + bias
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
