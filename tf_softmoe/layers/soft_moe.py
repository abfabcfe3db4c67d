"""Soft Mixture of Experts (Puigcerver et al., 2023) as used by Sokar et al. 2025."""

import tensorflow as tf

from tf_softmoe.layers import _common
from tf_softmoe.layers import experts as experts_lib
from tf_softmoe.metrics import diagnostics

_EPSILON = 1e-6


def l2_normalize(x, axis):
    """x / (‖x‖₂ + 1e-6) along `axis` (the reference adds ε to the norm)."""
    norm = tf.sqrt(tf.reduce_sum(tf.square(x), axis=axis, keepdims=True))
    return x / (norm + _EPSILON)


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class SoftMoE(tf.keras.layers.Layer):
    """Soft Mixture of Experts over the tokens of each sample.

    For one sample's tokens X ∈ R^{m×d}, router Φ ∈ R^{d×n×p} and n experts
    with p slots each (p = ceil(m · capacity_factor / n) unless `num_slots`):

        L[i,e,s] = Σ_k X[i,k] Φ[k,e,s]                     logits [m, n, p]
        D = softmax_i(L)           dispatch: over the TOKEN axis, per slot
        C = softmax_{(e,s)}(L)     combine: jointly over all n·p slots, per token
        X̃[e,s,:] = Σ_i D[i,e,s] X[i,:]                     slot inputs [n, p, d]
        Ỹ[e,s,:] = expert_e(X̃[e,s,:])                      Dense(h) → ReLU → Dense(d)
        Y[i,:]   = Σ_{e,s} C[i,e,s] Ỹ[e,s,:]                output [m, d]

    Routing is per sample: a sample's output never depends on the rest of the
    batch. With `normalize=True`, X and Φ are l2-normalised over d and Φ is
    multiplied by a learned scalar (initialised to 1) in the logits only; the
    slot inputs still mix the raw X. Both softmaxes run in float32, so the layer
    is safe under the `mixed_bfloat16` policy. There is no auxiliary loss.

    Weights (public layout, one-to-one with the JAX reference's parameters):
      `phi [d, n, p]`: LeCun-normal with fan_in = n·d (Flax's fan of that
        shape); `scale []` when normalising; `experts.kernel_in [n, d, h]`,
        `experts.bias_in [n, h]`, `experts.kernel_out [n, h, d]`,
        `experts.bias_out [n, d]` (Glorot-uniform per expert, zero biases).

    Routing statistics: call with `return_routing=True` to get
    `(outputs, routing)` where `routing` is a dict with `gate [n]`,
    `tokens_per_expert [n]` (per sample; see
    `tf_softmoe.metrics.diagnostics.expert_gate_statistics`) and `expert_hidden
    [batch, n, p, h]`; add `return_weights=True` for `dispatch_weights` and
    `combine_weights` `[batch, m, n, p]`. These are plain tensors, so they work
    in functional models and under XLA; write summaries outside the compiled
    function.

    Reference: Puigcerver et al., "From Sparse to Soft Mixtures of Experts",
    ICLR 2024; Sokar et al., "Don't flatten, tokenize!", ICLR 2025.

    Args:
      num_experts: n >= 1.
      expert_hidden_units: h of each expert (512 in the paper; 2048 for the
        "scaled SoftMoE-1").
      capacity_factor: c > 0 in p = ceil(m·c/n).
      num_slots: slots per expert; overrides the capacity factor (e.g. 1 for
        the single-slot study).
      normalize: l2-normalise tokens and Φ with a learned scale.
      noisy_experts: make the experts' first layer noisy (Rainbow).
      noise_sigma0: σ0 of that noisy layer.
    """

    def __init__(self, num_experts, expert_hidden_units=512, capacity_factor=1.0,
                 num_slots=None, normalize=False, noisy_experts=False,
                 noise_sigma0=0.5, **kwargs):
        super().__init__(**kwargs)
        self.num_experts = _common.check_positive_int("num_experts", num_experts)
        self.expert_hidden_units = _common.check_positive_int(
            "expert_hidden_units", expert_hidden_units)
        self.capacity_factor = _common.check_positive_float(
            "capacity_factor", capacity_factor)
        self.num_slots = (None if num_slots is None else
                          _common.check_positive_int("num_slots", num_slots))
        self.normalize = bool(normalize)
        self.noisy_experts = bool(noisy_experts)
        self.noise_sigma0 = _common.check_positive_float("noise_sigma0", noise_sigma0)
        self.experts = experts_lib.ExpertMLP(
            num_experts=self.num_experts, hidden_units=self.expert_hidden_units,
            noisy=self.noisy_experts, sigma0=self.noise_sigma0, name="experts",
            dtype=self.dtype_policy)

    def build(self, input_shape):
        m, d = _common.token_shape(input_shape, self.name)
        n = self.num_experts
        self.slots_per_expert = _common.slots_per_expert(
            m, n, self.capacity_factor, self.num_slots)
        # Keras computes fan_in of [d, n, p] as shape[-2] * prod(shape[:-2]) = n·d,
        # the same fan Flax's lecun_normal uses for the reference's Φ.
        self.phi = self.add_weight(
            "phi", shape=(d, n, self.slots_per_expert),
            initializer=tf.keras.initializers.LecunNormal())
        if self.normalize:
            self.scale = self.add_weight("scale", shape=(), initializer="ones")
        with tf.name_scope(self.experts.name):
            self.experts.build((None, n, self.slots_per_expert, d))
        super().build(input_shape)

    def router_logits(self, tokens):
        """L = X Φ, `[batch, m, n, p]`, in the compute dtype."""
        phi = tf.cast(self.phi, tokens.dtype)
        if self.normalize:
            tokens = l2_normalize(tokens, axis=-1)
            phi = tf.cast(self.scale, tokens.dtype) * l2_normalize(phi, axis=0)
        return tf.einsum("bmd,dnp->bmnp", tokens, phi)

    def routing_weights(self, tokens):
        """(dispatch, combine) weights, both `[batch, m, n, p]` float32."""
        logits = tf.cast(self.router_logits(tokens), tf.float32)
        dispatch = tf.nn.softmax(logits, axis=1)
        shape = tf.shape(logits)
        flat = tf.reshape(logits, [shape[0], shape[1], -1])
        combine = tf.reshape(tf.nn.softmax(flat, axis=-1), shape)
        return dispatch, combine

    def call(self, inputs, training=None, noise=None, return_routing=False, return_weights=False):
        dispatch, combine = self.routing_weights(inputs)
        dtype = inputs.dtype
        slot_inputs = tf.einsum("bmd,bmnp->bnpd", inputs, tf.cast(dispatch, dtype))
        slot_outputs, hidden = self.experts(
            slot_inputs, training=training, return_hidden=True, noise=noise)
        outputs = tf.einsum("bnpd,bmnp->bmd", slot_outputs, tf.cast(combine, dtype))
        if not (return_routing or return_weights):
            return outputs
        usage = diagnostics.expert_gate_statistics(combine)
        routing = {"gate": usage.gate,
                   "tokens_per_expert": usage.token_count_per_sample,
                   "expert_hidden": hidden}
        if return_weights:
            routing["dispatch_weights"] = dispatch
            routing["combine_weights"] = combine
        return outputs, routing

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_experts": self.num_experts,
            "expert_hidden_units": self.expert_hidden_units,
            "capacity_factor": self.capacity_factor,
            "num_slots": self.num_slots,
            "normalize": self.normalize,
            "noisy_experts": self.noisy_experts,
            "noise_sigma0": self.noise_sigma0,
        })
        return config
