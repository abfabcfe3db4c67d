"""Shared body of the sparse MoE layers: a linear router and a bank of experts."""

import tensorflow as tf

from tf_softmoe.layers import _common
from tf_softmoe.layers import experts as experts_lib


class RoutedExperts(tf.keras.layers.Layer):
    """Router `Dense(n, no bias)` plus `ExpertMLP` with a fixed slot capacity.

    The router kernel is LeCun-normal, Flax's `nn.Dense` default that the
    reference's `TopKRouter` uses.

    Subclasses set `self.capacity` from the token count in `capacity_for(m)`
    and implement `call`.
    """

    def __init__(self, num_experts, expert_hidden_units=512, capacity_factor=1.0,
                 noisy_experts=False, noise_sigma0=0.5, **kwargs):
        super().__init__(**kwargs)
        self.num_experts = _common.check_positive_int("num_experts", num_experts)
        self.expert_hidden_units = _common.check_positive_int(
            "expert_hidden_units", expert_hidden_units)
        self.capacity_factor = _common.check_positive_float(
            "capacity_factor", capacity_factor)
        self.noisy_experts = bool(noisy_experts)
        self.noise_sigma0 = _common.check_positive_float("noise_sigma0", noise_sigma0)
        self.router = tf.keras.layers.Dense(
            self.num_experts, use_bias=False, name="router",
            kernel_initializer="lecun_normal", dtype=self.dtype_policy)
        self.experts = experts_lib.ExpertMLP(
            num_experts=self.num_experts, hidden_units=self.expert_hidden_units,
            noisy=self.noisy_experts, sigma0=self.noise_sigma0, name="experts",
            dtype=self.dtype_policy)

    def build(self, input_shape):
        m, d = _common.token_shape(input_shape, self.name)
        self.capacity = self.capacity_for(m)
        with tf.name_scope(self.router.name):
            self.router.build((None, m, d))
        with tf.name_scope(self.experts.name):
            self.experts.build((None, self.num_experts, self.capacity, d))
        super().build(input_shape)

    def router_probabilities(self, inputs):
        """softmax over experts of X W_r, `[batch, m, n]`, float32."""
        return tf.nn.softmax(tf.cast(self.router(inputs), tf.float32), axis=-1)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_experts": self.num_experts,
            "expert_hidden_units": self.expert_hidden_units,
            "capacity_factor": self.capacity_factor,
            "noisy_experts": self.noisy_experts,
            "noise_sigma0": self.noise_sigma0,
        })
        return config
