"""Factorised Gaussian noisy dense layer (NoisyNet)."""

import abc
import contextlib
import math
import threading

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


def signed_sqrt(eps):
    """f(ε) = sign(ε)·sqrt(|ε|) (Fortunato et al., eq. 11)."""
    return tf.sign(eps) * tf.sqrt(tf.abs(eps))


# The seed that `seeded_draws` makes the draws below come from, and how many
# seeds have been taken from it in the function being traced.
_DRAWS = threading.local()


@contextlib.contextmanager
def seeded_draws(seed):
    """Within it, `fresh_seed` and `factorised_noise` draw from `seed`.

    TensorFlow's stateful random ops ignore every seed under XLA: a compiled
    function draws the same numbers in every process, whatever the run's
    seed, so two seeds of a run would explore and draw noise alike. A
    compiled function that takes a `[2]` integer `seed` per call and traces
    its body within `seeded_draws(seed)` draws statelessly instead: the k-th
    seed taken in the trace is `stateless_fold_in(seed, k)`. The draws then
    follow the seeds given, call by call. `CompiledPolicy` and `Learner` do
    this (compiled or not); outside such a scope the draws are TensorFlow's
    stateful ones.

    Args:
      seed: `[2]` integer tensor, a new one for every call (int32 under XLA,
        whose stateless random ops take no other seed type).
    """
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer or seed.shape.as_list() != [2]:
        raise ValueError(f"seeded_draws needs a [2] integer seed, got {seed.dtype.name} "
                         f"of shape {seed.shape}.")
    previous = getattr(_DRAWS, "state", None)
    _DRAWS.state = [seed, 0]
    try:
        yield
    finally:
        _DRAWS.state = previous


def fresh_seed():
    """A new stateless seed `[2]` int32 (one per forward pass): the next of
    the `seeded_draws` scope, else a stateful random draw."""
    state = getattr(_DRAWS, "state", None)
    if state is None:
        return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    state[1] += 1
    return tf.cast(tf.random.experimental.stateless_fold_in(state[0], state[1]), tf.int32)


def factorised_noise(shape, dtype):
    """f(ε), ε ~ N(0, 1) of `shape`, drawn afresh (from the `seeded_draws`
    scope when there is one)."""
    if getattr(_DRAWS, "state", None) is None:
        return signed_sqrt(tf.random.normal(shape, dtype=dtype))
    return signed_sqrt(tf.random.stateless_normal(shape, fresh_seed(), dtype=dtype))


class _NoiseSource(abc.ABC):
    """A source of (ε_in, ε_out): subclasses give the N(0, 1) draws, the
    layers' f is applied here."""

    @abc.abstractmethod
    def normals(self, role, size):
        """The N(0, 1) draw of `role` ("in" or "out") with `size` entries."""

    def factors(self, fan_in, units, dtype):
        """(ε_in, ε_out) for a layer of fan-in `fan_in` and width `units`."""
        return (tf.cast(signed_sqrt(self.normals("in", fan_in)), dtype),
                tf.cast(signed_sqrt(self.normals("out", units)), dtype))


class SeededNoise(_NoiseSource):
    """The factorised noise of one forward pass, drawn from one seed.

    Like the reference's noisy layers (`dopamine.jax.networks.NoisyNetwork`),
    which all take the same key within a pass: the seed splits into (s_in,
    s_out) and a layer of fan-in d and width u draws

        ε_in = f(N(0, I_d) from s_in),   ε_out = f(N(0, I_u) from s_out)

    so layers with the same fan-in (or width) see the same ε_in (or ε_out),
    and two passes given the same seed see the same noise (the reference's
    target network and online next-state pass).

    Args:
      seed: `[2]` integer stateless seed (e.g. `fresh_seed()`).
      batch_size: None: one draw for the whole batch, ε of shape `[d]`;
        an int (or scalar tensor) B: one draw per sample, `[B, d]`.
    """

    def __init__(self, seed, batch_size=None):
        self.seed = tf.convert_to_tensor(seed)
        if not self.seed.dtype.is_integer or self.seed.shape.as_list() != [2]:
            raise ValueError(
                f"SeededNoise needs a [2] integer seed (e.g. noisy_dense.fresh_seed()), "
                f"got {self.seed.dtype.name} of shape {self.seed.shape}.")
        self.batch_size = batch_size

    @property
    def per_sample(self):
        return self.batch_size is not None

    def normals(self, role, size):
        """The N(0, 1) draw of `role` ("in" or "out") with `size` entries."""
        seeds = tf.random.experimental.stateless_split(self.seed, 2)
        shape = [size] if self.batch_size is None else [self.batch_size, size]
        return tf.random.stateless_normal(shape, seeds[0 if role == "in" else 1])


class ExplicitNoise(_NoiseSource):
    """Noise given as the N(0, 1) draws themselves, e.g. the reference's.

    `draws[("in", d)]` is the input-side draw of every layer with fan-in d
    and `draws[("out", u)]` the output-side draw of every layer of width u,
    each `[size]` (shared by the batch) or `[B, size]` (per sample): the
    layers apply f(ε) = sign(ε)·sqrt(|ε|) themselves. Feeding the reference's
    `NoisyNetwork` draws p[:, 0] and q[0] makes a `NoisyDense` compute
    exactly what the reference's layer does.

    Args:
      draws: dict `{(role, size): array}`, role "in" or "out".
    """

    def __init__(self, draws):
        self.draws = {key: tf.convert_to_tensor(value, tf.float32)
                      for key, value in dict(draws).items()}
        for role, _ in self.draws:
            if role not in ("in", "out"):
                raise ValueError(f"ExplicitNoise keys are ('in'|'out', size), got role {role!r}.")

    @property
    def per_sample(self):
        return any(value.shape.rank == 2 for value in self.draws.values())

    def normals(self, role, size):
        try:
            return self.draws[(role, size)]
        except KeyError:
            raise KeyError(
                f"ExplicitNoise has no draw for ({role!r}, {size}); a layer of "
                f"{'fan-in' if role == 'in' else 'width'} {size} needs one. Known: "
                f"{sorted(self.draws)}.") from None


def per_sample_factor(eps, rank):
    """`[B, k]` per-sample noise reshaped to broadcast against a rank-`rank`
    input `[B, ..., k]`."""
    if rank == 2:
        return eps
    return tf.reshape(eps, tf.concat(
        [tf.shape(eps)[:1], tf.ones([rank - 2], tf.int32), tf.shape(eps)[1:]], 0))


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class NoisyDense(tf.keras.layers.Layer):
    """Dense layer with factorised Gaussian parameter noise.

    With ε_in ~ f(N(0, I_d)), ε_out ~ f(N(0, I_u)), f(ε) = sign(ε)·sqrt(|ε|),
    on every call made with `training=True`:

        W = μ_W + σ_W ⊙ (ε_in ε_outᵀ),   b = μ_b + σ_b ⊙ ε_out
        y = activation(x W + b)

    With `training=False` (or None) the noise is off: y = activation(x μ_W + μ_b).
    Initialisation: μ ~ U(-1/√d, 1/√d), σ = σ0/√d, d = fan-in. σ0 = 0.5 is the
    value of Fortunato et al.; the Dopamine/MoE reference code uses 0.1.

    Where the noise comes from: `call(x, training=True)` draws its own, one
    draw shared by every row of the batch. `call(x, training=True,
    noise=source)` takes (ε_in, ε_out) from `source.factors(d, u, dtype)`:
    a `SeededNoise` (one seed per forward pass, as the reference's key; one
    draw per sample when it has a batch size) or an `ExplicitNoise` (given
    draws, e.g. the reference's). Per-sample factors `[B, d]`, `[B, u]` give
    every sample its own W_b, computed as x_b μ + ((x_b ⊙ ε_in,b) σ) ⊙ ε_out,b.

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

    def call(self, inputs, training=None, noise=None):
        """y = activation(x W + b), noisy when `training` (see class doc).

        Args:
          inputs: `[..., d]`; with per-sample noise `[B, ..., d]`.
          training: draw noise when True.
          noise: None (draw here, shared by the batch), or a noise source
            (`SeededNoise`, `ExplicitNoise`) giving (ε_in, ε_out).
        """
        dtype = inputs.dtype
        kernel_mu = tf.cast(self.kernel_mu, dtype)
        bias = tf.cast(self.bias_mu, dtype) if self.use_bias else None
        if not training:
            outputs = tf.tensordot(inputs, kernel_mu, axes=1)
        else:
            fan_in = self.kernel_mu.shape[0]
            if noise is None:
                eps_in = factorised_noise([fan_in], dtype)
                eps_out = factorised_noise([self.units], dtype)
            else:
                eps_in, eps_out = noise.factors(fan_in, self.units, dtype)
            kernel_sigma = tf.cast(self.kernel_sigma, dtype)
            if eps_in.shape.rank == 2:
                # One W_b per sample: never formed, x_b μ + ((x_b ⊙ ε_in,b) σ) ⊙ ε_out,b.
                rank = inputs.shape.rank
                eps_in = per_sample_factor(eps_in, rank)
                eps_out = per_sample_factor(eps_out, rank)
                outputs = (tf.tensordot(inputs, kernel_mu, axes=1)
                           + tf.tensordot(inputs * eps_in, kernel_sigma, axes=1)
                           * eps_out)
            elif static_rows(inputs) <= FACTORISED_MAX_ROWS:
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
