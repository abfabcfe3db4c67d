"""Evaluation statistics and training diagnostics (SPEC sections 6 and 3).

- `atari_scores`: human-normalised Atari scores (standard random/human
  table of the 57 games).
- `aggregate`: IQM / mean / median / optimality gap with stratified-bootstrap
  intervals, and probability of improvement (Agarwal et al. 2021).
- `diagnostics`: XLA-safe TensorFlow ops for dormant units, feature rank,
  expert utilisation, parameter norm and Q / TD-error statistics.
"""

from tf_softmoe.metrics.aggregate import (
    DEFAULT_METRICS,
    CurveEstimate,
    IntervalEstimate,
    aggregate_iqm,
    aggregate_mean,
    aggregate_median,
    aggregate_metrics,
    aggregate_optimality_gap,
    interval_estimates,
    interval_estimates_per_condition,
    learning_curve_estimates,
    probability_of_improvement,
    probability_of_improvement_interval,
    resolve_backend,
)
from tf_softmoe.metrics.atari_scores import (
    ReferenceScores,
    atari_games,
    canonical_game_name,
    has_human_score,
    human_normalized_matrix,
    human_normalized_score,
    reference_scores,
)
from tf_softmoe.metrics.diagnostics import (
    DORMANT_EPSILON,
    ExpertGateStatistics,
    MeanStd,
    MeanVariance,
    dormant_fraction,
    dormant_neuron_scores,
    expert_gate_statistics,
    parameter_norm,
    q_statistics,
    singular_value_threshold_count,
    singular_values,
    srank,
    td_error_statistics,
)
