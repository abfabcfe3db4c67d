"""Network diagnostics for the training loop, as TensorFlow ops.

Every function here is a pure tensor computation with static output shapes:
no Python side effects, no summaries, no data-dependent shapes. They can be
called eagerly or inside `tf.function(jit_compile=True)` (checked in the
tests), and the caller decides what to log.

- `dormant_fraction`: share of dormant units (Sokar et al. 2023, ReDo).
- `srank`, `singular_value_threshold_count`: feature rank (Kumar et al.
  2021).
- `expert_gate_statistics`: SoftMoE expert utilisation (SPEC section 3).
- `parameter_norm`, `q_statistics`, `td_error_statistics`.
"""

from typing import NamedTuple, Sequence

import tensorflow as tf

# Floor of the layer-average activation in the dormant score. It keeps an
# all-zero layer finite (every unit then scores 0 and counts as dormant) and
# lies far below any real mean activation, so it leaves a live layer's scores
# unchanged.
DORMANT_EPSILON = 1e-9


class ExpertGateStatistics(NamedTuple):
    """SoftMoE expert utilisation over a batch; float32 tensors [experts].

    Attributes:
      gate: mean over batch and tokens of the combine weight summed over the
        expert's slots; sums to 1 over experts when C is a softmax over all
        slots.
      token_count: number of tokens in the whole batch whose largest combine
        weight lies in a slot of this expert.
      token_count_per_sample: `token_count` divided by the batch size.
    """
    gate: tf.Tensor
    token_count: tf.Tensor
    token_count_per_sample: tf.Tensor


class MeanStd(NamedTuple):
    """Mean and standard deviation (float32 scalars)."""
    mean: tf.Tensor
    std: tf.Tensor


class MeanVariance(NamedTuple):
    """Mean and variance (float32 scalars)."""
    mean: tf.Tensor
    variance: tf.Tensor


def _float_tensor(values, name):
    tensor = tf.convert_to_tensor(values)
    if not tensor.dtype.is_floating:
        tensor = tf.cast(tensor, tf.float32)
    if tensor.shape.rank is None:
        raise ValueError(
            f"{name} needs a known rank; got a tensor of unknown rank.")
    return tensor


def dormant_neuron_scores(activations, epsilon: float = DORMANT_EPSILON):
    """Per-unit dormancy scores of a layer's activations.

    score_i = mean|a_i| / max(mean_j mean|a_j|, epsilon), where mean|a_i|
    averages the absolute activation of unit i over every axis but the last
    (batch, tokens, ...).

    Args:
      activations: tensor [batch, ..., units], the post-activation outputs of
        one layer.
      epsilon: floor of the layer average, see `DORMANT_EPSILON`.

    Returns:
      float tensor [units] of non-negative scores; their mean is 1 unless
      every unit is silent (then all are 0).

    Raises:
      ValueError: if `activations` has fewer than 2 axes.
    """
    activations = _float_tensor(activations, "activations")
    if activations.shape.rank < 2:
        raise ValueError(
            "activations must have shape [batch, ..., units] (at least 2 "
            f"axes), got shape {activations.shape}.")
    leading_axes = list(range(activations.shape.rank - 1))
    unit_mean = tf.reduce_mean(tf.abs(activations), axis=leading_axes)
    layer_mean = tf.maximum(tf.reduce_mean(unit_mean),
                            tf.cast(epsilon, unit_mean.dtype))
    return unit_mean / layer_mean


def dormant_fraction(activations, tau: float = 0.0,
                     epsilon: float = DORMANT_EPSILON):
    """Fraction of dormant units in a layer: units with score_i <= tau.

    score_i is `dormant_neuron_scores` (Sokar et al. 2023, "The Dormant
    Neuron Phenomenon in Deep Reinforcement Learning"). tau = 0, as in the
    MoE papers' code, counts exactly the units that are zero on every input
    of the batch; ReDo uses tau = 0.025 (or 0.1).

    Args:
      activations: tensor [batch, ..., units].
      tau: dormancy threshold, >= 0.
      epsilon: floor of the layer average, see `DORMANT_EPSILON`.

    Returns:
      float32 scalar in [0, 1].

    Raises:
      ValueError: if `activations` has fewer than 2 axes.
    """
    scores = dormant_neuron_scores(activations, epsilon)
    dormant = tf.cast(scores <= tf.cast(tau, scores.dtype), tf.float32)
    return tf.reduce_mean(dormant)


def _feature_matrix(features):
    features = _float_tensor(features, "features")
    if features.shape.rank != 2:
        raise ValueError(
            "features must be a matrix [batch, dim]; flatten other axes "
            f"first. Got shape {features.shape}.")
    return features


def _singular_values_float64(features, method):
    """Descending singular values of a [batch, dim] matrix, as float64."""
    if method == "gram":
        batch, dim = features.shape
        # F^T F only when it is known to be the smaller one; otherwise the
        # [batch, batch] Gram matrix (a batch larger than dim then only adds
        # zero singular values, which leave srank and the counts unchanged).
        transpose_first = batch is not None and dim is not None and batch > dim
        features = tf.cast(features, tf.float64)
        gram = tf.matmul(features, features, transpose_a=transpose_first,
                         transpose_b=not transpose_first)
        eigenvalues = tf.linalg.eigvalsh(gram)  # ascending
        return tf.sqrt(tf.maximum(tf.reverse(eigenvalues, axis=[0]), 0.0))
    if method == "svd":
        singular = tf.linalg.svd(features, compute_uv=False)
        return tf.cast(singular, tf.float64)
    raise ValueError(f"method must be 'gram' or 'svd', got {method!r}.")


def singular_values(features, method: str = "gram"):
    """Singular values of a [batch, dim] feature matrix, in descending order.

    Args:
      features: tensor [batch, dim].
      method: 'gram' (default): sigma = sqrt(max(eigenvalues, 0)) of the
        smaller Gram matrix (F F^T or F^T F), formed and decomposed in
        float64 with tf.linalg.eigvalsh. It compiles under XLA and costs one
        [k, k] eigenproblem, k = min(batch, dim); float64 keeps sigma
        accurate to about 1e-7 sigma_max. With a batch size unknown at
        trace time it uses F F^T, k = batch.
        'svd': tf.linalg.svd. It compiles under XLA too, but XLA's CPU SVD
        is very slow on wide matrices: a [32, 2048] matrix took ~66 s per
        call on 2 busy CPU cores, against ~0.07 s eagerly. Use it eagerly or
        on small matrices only.

    Returns:
      tensor [min(batch, dim)] in the input's float dtype (float32 for
      integer input), descending; [batch] for 'gram' when the batch size is
      unknown at trace time (zeros beyond the rank).

    Raises:
      ValueError: if `features` is not 2-D or `method` is unknown.
    """
    features = _feature_matrix(features)
    return tf.cast(_singular_values_float64(features, method),
                   features.dtype)


def srank(features, delta: float = 0.01, method: str = "gram"):
    """Effective rank of a feature matrix (Kumar et al. 2021).

    srank_delta = min { k : sum_{i<=k} sigma_i / sum_i sigma_i >= 1 - delta }
    with sigma_1 >= sigma_2 >= ... the singular values of the [batch, dim]
    features ("Implicit Under-Parameterization Inhibits Data-Efficient Deep
    Reinforcement Learning").

    Args:
      features: tensor [batch, dim], e.g. the penultimate layer's output on a
        batch.
      delta: tolerance in [0, 1); 0.01 as in Kumar et al.
      method: 'gram' or 'svd', see `singular_values`.

    Returns:
      int32 scalar in [0, min(batch, dim)]; 0 only for an all-zero matrix.

    Raises:
      ValueError: if `features` is not 2-D or `method` is unknown.
    """
    sigma = _singular_values_float64(_feature_matrix(features), method)
    cumulative = tf.cumsum(sigma)
    total = cumulative[-1]
    short_of_target = tf.cast(cumulative < (1.0 - delta) * total, tf.int32)
    # Rounding can leave the last cumulative sum a hair under the target.
    rank = tf.minimum(tf.reduce_sum(short_of_target) + 1, tf.size(sigma))
    return tf.where(total > 0.0, rank, tf.zeros_like(rank))


def singular_value_threshold_count(features, threshold: float,
                                   method: str = "gram"):
    """Number of singular values with sigma_i / sigma_max > threshold.

    The count the reference code logs as `srank_t` for t in (0, 0.001,
    0.01). With t = 0 rounding noise (~1e-8 sigma_max) counts as non-zero,
    so prefer t > 0.

    Args:
      features: tensor [batch, dim].
      threshold: relative threshold t >= 0.
      method: 'gram' or 'svd', see `singular_values`.

    Returns:
      int32 scalar; 0 for an all-zero matrix.

    Raises:
      ValueError: if `features` is not 2-D or `method` is unknown.
    """
    sigma = _singular_values_float64(_feature_matrix(features), method)
    sigma_max = sigma[0]
    safe_max = tf.where(sigma_max > 0.0, sigma_max, tf.ones_like(sigma_max))
    above = tf.logical_and(sigma / safe_max > threshold, sigma_max > 0.0)
    return tf.reduce_sum(tf.cast(above, tf.int32))


def expert_gate_statistics(combine_weights) -> ExpertGateStatistics:
    """Expert utilisation of a SoftMoE layer from its combine weights.

    Args:
      combine_weights: tensor C [batch, tokens, experts, slots]; for each
        token a softmax over all experts x slots (SPEC section 3).

    Returns:
      ExpertGateStatistics(gate, token_count, token_count_per_sample), each
      float32 [experts]:
        gate[e] = mean_{b,i} sum_s C[b,i,e,s];
        token_count[e] = #{(b,i) : the largest C[b,i,:,:] lies in expert e},
          ties going to the lowest flat (expert, slot) index;
        token_count_per_sample = token_count / batch.

    Raises:
      ValueError: if the tensor is not 4-D with static expert and slot axes.
    """
    combine = _float_tensor(combine_weights, "combine_weights")
    if (combine.shape.rank != 4 or combine.shape[2] is None
            or combine.shape[3] is None):
        raise ValueError(
            "combine_weights must have shape [batch, tokens, experts, slots] "
            f"with static experts and slots, got {combine.shape}.")
    num_experts, num_slots = combine.shape[2], combine.shape[3]
    gate = tf.reduce_mean(tf.reduce_sum(combine, axis=3), axis=[0, 1])
    dynamic_shape = tf.shape(combine)
    flat = tf.reshape(combine, [dynamic_shape[0], dynamic_shape[1],
                                num_experts * num_slots])
    top_slot = tf.math.argmax(flat, axis=-1, output_type=tf.int32)
    top_expert = top_slot // num_slots
    token_count = tf.reduce_sum(
        tf.one_hot(top_expert, num_experts, dtype=tf.float32), axis=[0, 1])
    batch_size = tf.cast(dynamic_shape[0], tf.float32)
    return ExpertGateStatistics(
        gate=tf.cast(gate, tf.float32), token_count=token_count,
        token_count_per_sample=token_count / batch_size)


def parameter_norm(variables: Sequence[tf.Tensor]):
    """Global l2 norm sqrt(sum_v sum_k v_k^2) of variables or tensors.

    The reference code logs the squared norm under `param_norm`.

    Args:
      variables: non-empty sequence of tf.Variable / tensors, e.g.
        `model.trainable_variables`.

    Returns:
      float32 scalar.

    Raises:
      ValueError: if `variables` is empty.
    """
    variables = list(variables)
    if not variables:
        raise ValueError(
            "parameter_norm needs at least one variable; got none. Build the "
            "model before asking for its norm.")
    squares = [tf.reduce_sum(tf.square(tf.cast(v, tf.float32)))
               for v in variables]
    return tf.sqrt(tf.add_n(squares))


def q_statistics(q_values) -> MeanStd:
    """Mean and population standard deviation of all Q-values.

    Args:
      q_values: tensor of any shape, e.g. [batch, actions].

    Returns:
      MeanStd(mean, std), float32 scalars.
    """
    q_values = tf.cast(_float_tensor(q_values, "q_values"), tf.float32)
    return MeanStd(mean=tf.reduce_mean(q_values),
                   std=tf.math.reduce_std(q_values))


def td_error_statistics(td_errors) -> MeanVariance:
    """Mean and population variance of per-sample TD errors or losses.

    Args:
      td_errors: tensor of any shape, e.g. [batch].

    Returns:
      MeanVariance(mean, variance), float32 scalars.
    """
    td_errors = tf.cast(_float_tensor(td_errors, "td_errors"), tf.float32)
    return MeanVariance(mean=tf.reduce_mean(td_errors),
                        variance=tf.math.reduce_variance(td_errors))
