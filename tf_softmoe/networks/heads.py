"""Q heads: linear DQN head, C51 head, their dueling and noisy variants."""

import tensorflow as tf

from tf_softmoe import layers
from tf_softmoe.layers import _common


def _linear(units, noisy, sigma0, name):
    if noisy:
        return layers.NoisyDense(units, sigma0=sigma0, name=name)
    return tf.keras.layers.Dense(units, kernel_initializer="glorot_uniform",
                                 name=name)


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class QHead(tf.keras.layers.Layer):
    """Features `[B, F]` → Q-values `[B, A]` (DQN) or logits `[B, A, atoms]` (C51).

    Plain: one linear layer to A (or A·atoms). Dueling (Wang et al. 2016):

        out = V(x) + (Adv(x) − mean_a Adv(x)_a)

    with V and Adv linear layers straight off the features (per atom for
    C51), as the reference's Rainbow network. `noisy` makes every linear
    layer a `NoisyDense`. The head always computes in float32.

    Args:
      num_actions: A.
      num_atoms: None for Q-values, else the number of C51 atoms.
      dueling: value/advantage decomposition.
      noisy, sigma0: noisy-net linear layers.
    """

    def __init__(self, num_actions, num_atoms=None, dueling=False, noisy=False,
                 sigma0=0.1, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.num_actions = _common.check_positive_int("num_actions", num_actions)
        self.num_atoms = (None if num_atoms is None else
                          _common.check_positive_int("num_atoms", num_atoms, 2))
        self.dueling = bool(dueling)
        self.noisy = bool(noisy)
        self.sigma0 = float(sigma0)
        atoms = self.num_atoms or 1
        self.advantage = _linear(self.num_actions * atoms, noisy, sigma0, "advantage")
        self.value = _linear(atoms, noisy, sigma0, "value") if self.dueling else None

    def call(self, inputs, training=None, noise=None):
        """Q-values or logits; `noise` is the noise source of the noisy
        layers (see `NoisyDense`), used when `noisy` and `training`."""
        atoms = self.num_atoms or 1
        x = tf.cast(inputs, tf.float32)
        kwargs = {"training": training}
        if self.noisy:
            kwargs["noise"] = noise
        out = tf.reshape(self.advantage(x, **kwargs), [-1, self.num_actions, atoms])
        if self.dueling:
            value = tf.reshape(self.value(x, **kwargs), [-1, 1, atoms])
            out = value + out - tf.reduce_mean(out, axis=1, keepdims=True)
        if self.num_atoms is None:
            return out[..., 0]
        return out

    def compute_output_shape(self, input_shape):
        batch = tf.TensorShape(input_shape)[0]
        if self.num_atoms is None:
            return tf.TensorShape([batch, self.num_actions])
        return tf.TensorShape([batch, self.num_actions, self.num_atoms])

    def get_config(self):
        config = super().get_config()
        config.update({"num_actions": self.num_actions, "num_atoms": self.num_atoms,
                       "dueling": self.dueling, "noisy": self.noisy,
                       "sigma0": self.sigma0})
        return config
