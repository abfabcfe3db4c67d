"""A batch of independent two-layer MLP experts evaluated with one einsum each."""

import math

import tensorflow as tf

from tf_softmoe.layers import _common
from tf_softmoe.layers import noisy_dense


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class ExpertMLP(tf.keras.layers.Layer):
    """n experts, each `Dense(h) → ReLU → Dense(d_out)`, with its own weights.

    For slot inputs X̃ of shape `[batch, n, p, d]` (p slots per expert):

        H[b,e,s,:] = relu(X̃[b,e,s,:] W_in[e] + b_in[e])      W_in[e] ∈ R^{d×h}
        Y[b,e,s,:] = H[b,e,s,:] W_out[e] + b_out[e]            W_out[e] ∈ R^{h×d_out}

    No activation follows the output projection (SoftMoE, Puigcerver et al.).
    All experts run as one batched matmul per layer on an expert-major
    `[n, batch·p, d]` view: there is no Python loop over experts. Kernels are Glorot-uniform per expert on its own 2-D shape;
    biases start at zero.

    Weight layout (so that weights trained elsewhere load by name):
    `kernel_in [n, d, h]`, `bias_in [n, h]`, `kernel_out [n, h, d_out]`,
    `bias_out [n, d_out]`; with `noisy=True` also `kernel_in_sigma [n, d, h]` and
    `bias_in_sigma [n, h]`, and `kernel_in`/`bias_in` are the noise means.

    Args:
      num_experts: n >= 1.
      hidden_units: h, the hidden width of each expert (512 in the paper).
      output_units: d_out; None keeps the token width d.
      noisy: make the first layer of every expert a factorised-Gaussian noisy
        layer (as `NoisyDense`), for Rainbow's noisy-net exploration. When
        `training=True` one draw (ε_in `[d]`, ε_out `[h]`) serves every expert
        and slot, as in the reference (its experts share one key); each
        expert keeps its own μ and σ. `call(..., noise=source)` takes the
        draw from a `SeededNoise`/`ExplicitNoise`, per sample when that
        source has a batch size.
      sigma0: σ0 of the noisy layer (0.5 Fortunato et al.; 0.1 in the reference).
    """

    def __init__(self, num_experts, hidden_units=512, output_units=None,
                 noisy=False, sigma0=0.5, **kwargs):
        super().__init__(**kwargs)
        self.num_experts = _common.check_positive_int("num_experts", num_experts)
        self.hidden_units = _common.check_positive_int("hidden_units", hidden_units)
        self.output_units = (None if output_units is None else
                             _common.check_positive_int("output_units", output_units))
        self.noisy = bool(noisy)
        self.sigma0 = _common.check_positive_float("sigma0", sigma0)

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        if shape.rank != 4 or shape[1] != self.num_experts or shape[-1] is None:
            raise ValueError(
                f"{self.name} expects slot inputs of shape [batch, num_experts="
                f"{self.num_experts}, slots, dim] with a known dim, received {shape}.")
        d, h, n = int(shape[-1]), self.hidden_units, self.num_experts
        d_out = self.output_units or d
        if self.noisy:
            bound = 1.0 / math.sqrt(d)
            kernel_in_init = tf.keras.initializers.RandomUniform(-bound, bound)
            bias_in_init = tf.keras.initializers.RandomUniform(-bound, bound)
        else:
            kernel_in_init = _common.PerExpertGlorotUniform()
            bias_in_init = "zeros"
        self.kernel_in = self.add_weight("kernel_in", (n, d, h), initializer=kernel_in_init)
        self.bias_in = self.add_weight("bias_in", (n, h), initializer=bias_in_init)
        if self.noisy:
            sigma_init = tf.keras.initializers.Constant(self.sigma0 / math.sqrt(d))
            self.kernel_in_sigma = self.add_weight(
                "kernel_in_sigma", (n, d, h), initializer=sigma_init)
            self.bias_in_sigma = self.add_weight(
                "bias_in_sigma", (n, h), initializer=sigma_init)
        self.kernel_out = self.add_weight(
            "kernel_out", (n, h, d_out), initializer=_common.PerExpertGlorotUniform())
        self.bias_out = self.add_weight("bias_out", (n, d_out), initializer="zeros")
        super().build(input_shape)

    def _noisy_weights(self, noise):
        """(kernel_in, bias_in) with one noise draw shared by every expert."""
        n, d, h = self.kernel_in.shape
        dtype = self.kernel_in.dtype
        if noise is None:
            eps_in = noisy_dense.factorised_noise([d], dtype)
            eps_out = noisy_dense.factorised_noise([h], dtype)
        else:
            eps_in, eps_out = noise.factors(d, h, dtype)
        kernel = self.kernel_in + self.kernel_in_sigma * (eps_in[:, None] * eps_out[None, :])
        return kernel, self.bias_in + self.bias_in_sigma * eps_out

    def call(self, inputs, training=None, return_hidden=False, noise=None):
        """Runs every expert on its slots.

        Args:
          inputs: `[batch, n, p, d]`.
          training: draws noise when True and `noisy`.
          return_hidden: also return the hidden activations `[batch, n, p, h]`
            (for dormant-neuron diagnostics).
          noise: None (one fresh draw for the batch) or a noise source
            (`SeededNoise`, `ExplicitNoise`); per-sample sources give every
            sample its own draw.

        Returns:
          `[batch, n, p, d_out]`, or `(outputs, hidden)` with `return_hidden`.
        """
        dtype = inputs.dtype
        n, p, d = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        batch = tf.shape(inputs)[0]
        # Expert-major [n, B·p, d] so each expert is one plain batched matmul.
        # Transposing the narrow d-wide input once is much cheaper on CPU than
        # letting einsum transpose the wide [B, n, p, h] hidden tensor in the
        # forward and in every gradient (measured in benchmarks/layer_bench.py).
        x = tf.reshape(tf.transpose(inputs, [1, 0, 2, 3]), [n, -1, d])
        noisy = self.noisy and training
        eps = None if not noisy or noise is None else noise.factors(
            d, self.hidden_units, dtype)
        if eps is not None and eps[0].shape.rank == 2:
            # Per-sample draws: x_b μ_e + ((x_b ⊙ ε_in,b) σ_e) ⊙ ε_out,b, rows
            # of x ordered (sample, slot) as the reshape above left them.
            eps_in = tf.repeat(eps[0], p, axis=0)[None]    # [1, B·p, d]
            eps_out = tf.repeat(eps[1], p, axis=0)[None]   # [1, B·p, h]
            hidden = (tf.matmul(x, tf.cast(self.kernel_in, dtype))
                      + tf.matmul(x * eps_in, tf.cast(self.kernel_in_sigma, dtype))
                      * eps_out
                      + tf.cast(self.bias_in, dtype)[:, None, :]
                      + tf.cast(self.bias_in_sigma, dtype)[:, None, :] * eps_out)
            hidden = tf.nn.relu(hidden)
        else:
            if noisy:
                shared = None if eps is None else _FixedFactors(eps)
                kernel_in, bias_in = self._noisy_weights(shared)
            else:
                kernel_in, bias_in = self.kernel_in, self.bias_in
            hidden = tf.nn.relu(tf.matmul(x, tf.cast(kernel_in, dtype))
                                + tf.cast(bias_in, dtype)[:, None, :])
        outputs = (tf.matmul(hidden, tf.cast(self.kernel_out, dtype))
                   + tf.cast(self.bias_out, dtype)[:, None, :])
        d_out = outputs.shape[-1]
        outputs = tf.transpose(tf.reshape(outputs, [n, batch, p, d_out]), [1, 0, 2, 3])
        if return_hidden:
            hidden = tf.transpose(
                tf.reshape(hidden, [n, batch, p, self.hidden_units]), [1, 0, 2, 3])
            return outputs, hidden
        return outputs

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        return shape[:-1].concatenate([self.output_units or shape[-1]])

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_experts": self.num_experts,
            "hidden_units": self.hidden_units,
            "output_units": self.output_units,
            "noisy": self.noisy,
            "sigma0": self.sigma0,
        })
        return config


class _FixedFactors:
    """A noise source returning factors already drawn."""

    def __init__(self, factors):
        self._factors = factors

    def factors(self, fan_in, units, dtype):
        del fan_in, units
        return tuple(tf.cast(f, dtype) for f in self._factors)
