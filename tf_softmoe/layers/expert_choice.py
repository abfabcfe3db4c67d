"""Expert-choice routing: each expert picks its top tokens."""

import tensorflow as tf

from tf_softmoe.layers import _common
from tf_softmoe.layers import _routed


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class ExpertChoice(_routed.RoutedExperts):
    """Mixture of experts where experts choose tokens (Zhou et al., 2022).

    Per sample, with tokens X ∈ R^{m×d} and p = ceil(m · capacity_factor / n):

        S = softmax(X W_r)                       token-to-expert scores [m, n]
        I[e], G[e] = top_p(S[:, e])              expert e's p tokens and scores
        X̃[e,s] = X[I[e,s]]
        Y[i] = Σ_{e,s : I[e,s]=i} G[e,s] · expert_e(X̃[e,s])

    A token may be picked by several experts or by none (then its output is
    zero). Unlike SoftMoE, there is no softmax over slots when combining: each
    expert output is scaled by its own score.

    Routing statistics: `return_routing=True` gives `(outputs, routing)` with
    `gate [n]` (mean score per expert), `tokens_per_expert [n]` (always p, kept
    for a uniform interface), `unrouted_fraction []` (tokens no expert took)
    and `expert_hidden [batch, n, p, h]`.

    Reference: Zhou et al., "Mixture-of-Experts with Expert Choice Routing",
    NeurIPS 2022.

    Args:
      num_experts: n >= 1.
      expert_hidden_units: hidden width of each expert.
      capacity_factor: c > 0; p is capped at m.
      noisy_experts / noise_sigma0: noisy first expert layer (Rainbow).
    """

    def capacity_for(self, num_tokens):
        """p = ceil(m · capacity_factor / n), at most m."""
        return min(num_tokens, _common.slots_per_expert(
            num_tokens, self.num_experts, self.capacity_factor, None))

    def call(self, inputs, training=None, noise=None, return_routing=False):
        dtype = inputs.dtype
        m = inputs.shape[1]
        scores = self.router_probabilities(inputs)
        # top_k works on the last axis: put tokens there, one row per expert.
        gates, token_index = tf.math.top_k(tf.transpose(scores, [0, 2, 1]),
                                           k=self.capacity)  # [b, n, p]
        selection = tf.one_hot(token_index, m, dtype=tf.float32)  # [b, n, p, m]
        slot_inputs = tf.einsum("bnpm,bmd->bnpd", tf.cast(selection, dtype), inputs)
        slot_outputs, hidden = self.experts(
            slot_inputs, training=training, return_hidden=True, noise=noise)
        combine = selection * gates[..., None]
        outputs = tf.einsum("bnpd,bnpm->bmd", slot_outputs, tf.cast(combine, dtype))
        if not return_routing:
            return outputs
        taken = tf.reduce_max(tf.reduce_max(selection, axis=2), axis=1)  # [b, m]
        routing = {
            "gate": tf.reduce_mean(scores, axis=[0, 1]),
            "tokens_per_expert": tf.fill([self.num_experts], float(self.capacity)),
            "unrouted_fraction": 1.0 - tf.reduce_mean(taken),
            "expert_hidden": hidden,
        }
        return outputs, routing
