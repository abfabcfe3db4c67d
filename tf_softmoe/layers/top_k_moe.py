"""Sparse top-k Mixture of Experts with a per-expert token capacity."""

import tensorflow as tf

from tf_softmoe.layers import _common
from tf_softmoe.layers import _routed


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class TopKMoE(_routed.RoutedExperts):
    """Token-choice sparse MoE: each token goes to its k best experts.

    Per sample, with tokens X ∈ R^{m×d}:

        G = softmax(X W_r)                      router probabilities [m, n], W_r no bias
                                                (LeCun-normal, as the reference)
        E_i = top_k(G[i])                       the k experts token i picks
        capacity C = ceil(m · capacity_factor / n) tokens per expert
        Y[i] = Σ_{e ∈ E_i, i kept by e} G[i,e] · expert_e(X[i])

    Each expert takes the tokens that picked it in order — all first choices
    in token order, then all second choices, and so on — until it holds C;
    the rest are dropped and contribute zeros. Gates are the router's softmax
    probabilities (not renormalised over the k choices), as in the reference.

    Routing statistics: `return_routing=True` gives `(outputs, routing)` with
    `gate [n]` (mean router probability per expert), `tokens_per_expert [n]`
    (tokens kept per expert, per sample), `dropped_fraction []` and
    `expert_hidden [batch, n, C, h]`.

    Reference: Shazeer et al. 2017; Lepikhin et al. 2021 (GShard capacity);
    Obando-Ceron et al. 2024 (this baseline in deep RL).

    Args:
      num_experts: n >= 1.
      expert_hidden_units: hidden width of each expert.
      k: experts per token, 1 <= k <= n (the paper's baseline is top-1).
      capacity_factor: c > 0.
      noisy_experts / noise_sigma0: noisy first expert layer (Rainbow).
    """

    def __init__(self, num_experts, expert_hidden_units=512, k=1,
                 capacity_factor=1.0, noisy_experts=False, noise_sigma0=0.5,
                 **kwargs):
        super().__init__(num_experts, expert_hidden_units=expert_hidden_units,
                         capacity_factor=capacity_factor,
                         noisy_experts=noisy_experts, noise_sigma0=noise_sigma0,
                         **kwargs)
        self.k = _common.check_positive_int("k", k)
        if self.k > self.num_experts:
            raise ValueError(
                f"k must be in [1, num_experts={self.num_experts}], got {k}.")

    def capacity_for(self, num_tokens):
        """C = ceil(m · capacity_factor / n)."""
        return _common.slots_per_expert(
            num_tokens, self.num_experts, self.capacity_factor, None)

    def dispatch_mask(self, probabilities):
        """One-hot `[batch, m, n, C]` assignment of tokens to expert slots.

        Args:
          probabilities: router softmax `[batch, m, n]` (float32).

        Returns:
          (dispatch, gates): dispatch is 1 where token i sits in slot c of
          expert e; gates `[batch, m, n]` hold G[i,e] where token i was kept by
          e and 0 elsewhere.
        """
        n, capacity = self.num_experts, self.capacity
        top_gates, top_experts = tf.math.top_k(probabilities, k=self.k)  # [b, m, k]
        choice = tf.one_hot(top_experts, n, dtype=tf.float32)  # [b, m, k, n]
        # Priority order: every token's first choice (in token order) before any
        # second choice, so transpose to [b, k, m, n] before counting.
        by_rank = tf.transpose(choice, [0, 2, 1, 3])
        shape = tf.shape(by_rank)
        flat = tf.reshape(by_rank, [shape[0], -1, n])
        position = tf.cumsum(flat, axis=1, exclusive=True) * flat  # slot index
        kept = flat * tf.cast(position < capacity, tf.float32)
        slot = tf.one_hot(tf.cast(position, tf.int32), capacity, dtype=tf.float32)
        dispatch = tf.reshape(kept[..., None] * slot, [shape[0], self.k, -1, n, capacity])
        dispatch = tf.reduce_sum(dispatch, axis=1)  # [b, m, n, C]
        kept_by_token = tf.reduce_sum(dispatch, axis=-1)  # [b, m, n]
        gate_values = tf.reduce_sum(
            choice * top_gates[..., None], axis=2)  # [b, m, n]
        return dispatch, kept_by_token * gate_values

    def call(self, inputs, training=None, noise=None, return_routing=False):
        dtype = inputs.dtype
        probabilities = self.router_probabilities(inputs)
        dispatch, gates = self.dispatch_mask(probabilities)
        slot_inputs = tf.einsum("bmd,bmnc->bncd", inputs, tf.cast(dispatch, dtype))
        slot_outputs, hidden = self.experts(
            slot_inputs, training=training, return_hidden=True, noise=noise)
        combine = dispatch * gates[..., None]
        outputs = tf.einsum("bncd,bmnc->bmd", slot_outputs, tf.cast(combine, dtype))
        if not return_routing:
            return outputs
        tokens_per_expert = tf.reduce_mean(tf.reduce_sum(dispatch, axis=[1, 3]), axis=0)
        kept = tf.reduce_sum(dispatch, axis=[1, 2, 3])
        total = tf.cast(tf.shape(inputs)[1] * self.k, tf.float32)
        routing = {
            "gate": tf.reduce_mean(probabilities, axis=[0, 1]),
            "tokens_per_expert": tokens_per_expert,
            "dropped_fraction": tf.reduce_mean(1.0 - kept / total),
            "expert_hidden": hidden,
        }
        return outputs, routing

    def get_config(self):
        config = super().get_config()
        config["k"] = self.k
        return config
