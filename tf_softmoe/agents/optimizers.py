"""Adam whose dense update is TensorFlow's fused kernel."""

import tensorflow as tf

from tf_softmoe.layers import _common


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class FusedAdam(tf.keras.optimizers.Adam):
    """`tf.keras.optimizers.Adam`, the same update, in one kernel per variable.

    With t the update count, g the gradient and ε̂ = ε·√(1 − β₂ᵗ) when
    `adaptive_epsilon` (Adam's Algorithm 1, as optax and the JAX reference),
    else ε̂ = ε:

        m ← m + (g − m)(1 − β₁)          v ← v + (g² − v)(1 − β₂)
        θ ← θ − lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / (√v + ε̂)

    Keras writes this as a dozen element-wise ops per variable, each a pass
    over memory (outside XLA nothing fuses them); here the dense case is one
    `ResourceApplyAdam`, which reads θ, m, v and g once and writes θ, m, v
    once. Sparse gradients (`IndexedSlices`) and AMSGrad keep Keras's code.
    Slots, arguments and checkpoints are Keras Adam's, so checkpoints restore
    across the two; the config also keeps `adaptive_epsilon`, which Keras's
    drops.
    """

    def update_step(self, gradient, variable):
        if isinstance(gradient, tf.IndexedSlices) or self.amsgrad:
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        beta_1_power = tf.pow(beta_1, step)
        beta_2_power = tf.pow(beta_2, step)
        epsilon = tf.cast(self.epsilon, dtype)
        if self.adaptive_epsilon:
            # The kernel adds its ε to √v, i.e. Keras's ε̂; passing ε̂ keeps
            # Algorithm 1's ε.
            epsilon = epsilon * tf.sqrt(1 - beta_2_power)
        index = self._index_dict[self._var_key(variable)]
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle,
            v=self._velocities[index].handle, beta1_power=beta_1_power,
            beta2_power=beta_2_power, lr=tf.cast(self.learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=epsilon, grad=gradient)

    def get_config(self):
        # Keras's Adam leaves `adaptive_epsilon` out of its config, so a
        # deserialised copy would silently switch to the "ε hat" placement.
        config = super().get_config()
        config["adaptive_epsilon"] = self.adaptive_epsilon
        return config
