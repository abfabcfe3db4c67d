"""Tests of tf_softmoe.metrics.aggregate."""

import importlib.util
import sys

import numpy as np
import pytest

from tf_softmoe.metrics import aggregate

HAS_RLIABLE = importlib.util.find_spec("rliable") is not None
needs_rliable = pytest.mark.skipif(not HAS_RLIABLE,
                                   reason="rliable not installed")

# 4 runs x 3 games. Sorted, the 12 scores are
#   0.1 0.2 0.3 | 0.4 0.5 0.6 0.7 0.8 0.9 | 1.2 2.0 5.0
# IQM drops floor(12/4) = 3 from each end:
#   (0.4+0.5+0.6+0.7+0.8+0.9)/6 = 3.9/6 = 0.65.
# Per-game means over runs: 1.0/4 = 0.25, 9.0/4 = 2.25, 2.7/4 = 0.675, so
# mean = 3.175/3 = 1.058333..., median = 0.675.
# min(scores, 1) sums per game to 1.0, 3.8 (2.0, 1.2 and 5.0 become 1), 2.7:
# mean 7.5/12 = 0.625, optimality gap = 1 - 0.625 = 0.375.
HAND_SCORES = np.array([[0.1, 2.0, 0.5],
                        [0.4, 0.8, 0.7],
                        [0.3, 1.2, 0.6],
                        [0.2, 5.0, 0.9]])
HAND_VALUES = {"iqm": 0.65, "mean": 3.175 / 3, "median": 0.675,
               "optimality_gap": 0.375}

BACKENDS = ["numpy", pytest.param("rliable", marks=needs_rliable)]


def _synthetic(runs, games=10, seed=0):
    rng = np.random.default_rng(seed)
    game_level = np.linspace(0.2, 2.0, games)
    return game_level + rng.normal(0.0, 0.4, size=(runs, games))


def test_point_estimates_hand_values():
    approx = pytest.approx
    assert aggregate.aggregate_iqm(HAND_SCORES) == approx(0.65, abs=1e-12)
    assert aggregate.aggregate_mean(HAND_SCORES) == approx(1.0583333333333,
                                                           abs=1e-12)
    assert aggregate.aggregate_median(HAND_SCORES) == approx(0.675,
                                                             abs=1e-12)
    assert aggregate.aggregate_optimality_gap(HAND_SCORES) == approx(
        0.375, abs=1e-12)
    assert aggregate.aggregate_metrics(HAND_SCORES) == approx(HAND_VALUES)


def test_iqm_of_a_4x2_matrix():
    # Sorted: 0.1 0.2 | 0.3 0.4 0.8 1.2 | 2.0 5.0
    #   -> (0.3+0.4+0.8+1.2)/4 = 0.675.
    scores = np.array([[0.1, 2.0], [0.4, 0.8], [0.3, 1.2], [0.2, 5.0]])
    assert aggregate.aggregate_iqm(scores) == pytest.approx(0.675, abs=1e-12)


def test_optimality_gap_threshold():
    # gamma = 2: min(s, 2) sums to 1.0 + 6.0 + 2.7 = 9.7 -> 2 - 9.7/12.
    gap = aggregate.aggregate_optimality_gap(HAND_SCORES, gamma=2.0)
    assert gap == pytest.approx(2.0 - 9.7 / 12, abs=1e-12)


def test_iqm_matches_scipy_trim_mean_when_count_not_divisible_by_4():
    scipy_stats = pytest.importorskip("scipy.stats")
    scores = _synthetic(runs=5, games=3)  # 15 scores: cut floor(15/4) = 3
    iqm = aggregate.aggregate_iqm(scores)
    assert iqm == pytest.approx(
        scipy_stats.trim_mean(scores, 0.25, axis=None), abs=1e-12)
    assert iqm == pytest.approx(np.sort(scores.ravel())[3:12].mean(),
                                abs=1e-12)


@needs_rliable
def test_point_estimates_match_rliable():
    from rliable import metrics as rly_metrics
    scores = _synthetic(runs=5, games=7)
    pairs = [
        (aggregate.aggregate_iqm, rly_metrics.aggregate_iqm),
        (aggregate.aggregate_mean, rly_metrics.aggregate_mean),
        (aggregate.aggregate_median, rly_metrics.aggregate_median),
        (aggregate.aggregate_optimality_gap,
         rly_metrics.aggregate_optimality_gap),
    ]
    for ours, theirs in pairs:
        assert ours(scores) == pytest.approx(theirs(scores), abs=1e-12)


def test_probability_of_improvement_hand_values():
    # Game 0: x {1, 3} vs y {2, 0}: 1>2 no, 1>0 yes, 3>2 yes, 3>0 yes
    #   -> 3/4.
    # Game 1: x {5, 7} vs y {5, 6}: 5=5 half, 5>6 no, 7>5 yes, 7>6 yes
    #   -> 2.5/4.
    # Average (0.75 + 0.625) / 2 = 0.6875.
    x = np.array([[1.0, 5.0], [3.0, 7.0]])
    y = np.array([[2.0, 5.0], [0.0, 6.0]])
    poi = aggregate.probability_of_improvement
    assert poi(x, y) == pytest.approx(0.6875)
    assert poi(y, x) == pytest.approx(0.3125)
    assert poi(x, x) == pytest.approx(0.5)


def test_probability_of_improvement_unequal_runs():
    poi = aggregate.probability_of_improvement
    # One game, x {1, 2, 3} vs y {2}: 1>2 no, 2=2 half, 3>2 yes -> 1.5/3.
    x = np.array([[1.0], [2.0], [3.0]])
    assert poi(x, np.array([[2.0]])) == pytest.approx(0.5)
    # x {4, 0, 3} vs y {2, 1}: 4 beats both, 0 neither, 3 both -> 4/6.
    x = np.array([[4.0], [0.0], [3.0]])
    assert poi(x, np.array([[2.0], [1.0]])) == pytest.approx(4 / 6)


@needs_rliable
def test_probability_of_improvement_matches_rliable():
    from rliable import metrics as rly_metrics
    x = _synthetic(runs=5, games=4, seed=1)
    y = _synthetic(runs=3, games=4, seed=2)
    assert aggregate.probability_of_improvement(x, y) == pytest.approx(
        rly_metrics.probability_of_improvement(x, y), abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_intervals_bracket_point_estimates(backend):
    scores = _synthetic(runs=5)
    estimates = aggregate.interval_estimates(scores, reps=200, seed=3,
                                             backend=backend)
    assert set(estimates) == set(aggregate.DEFAULT_METRICS)
    points = aggregate.aggregate_metrics(scores)
    for name, estimate in estimates.items():
        assert estimate.point == pytest.approx(points[name])
        assert estimate.lower <= estimate.point <= estimate.upper, name
        assert estimate.lower < estimate.upper, name


def test_intervals_shrink_with_more_runs():
    few = aggregate.interval_estimates(_synthetic(runs=4), reps=400, seed=0,
                                       backend="numpy")
    many = aggregate.interval_estimates(_synthetic(runs=64), reps=400,
                                        seed=0, backend="numpy")
    for name in aggregate.DEFAULT_METRICS:
        width_few = few[name].upper - few[name].lower
        width_many = many[name].upper - many[name].lower
        # Width goes like 1/sqrt(runs): 16x the runs, about 1/4 the width.
        assert width_many < 0.5 * width_few, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_bootstrap_is_stratified_over_games(backend):
    # Runs agree within each game and games differ: resampling runs inside
    # each game cannot change the matrix, so every interval collapses to the
    # point. An unstratified bootstrap over all cells would mix games and
    # give wide intervals.
    scores = np.tile([0.0, 1.0, 5.0, 0.3], (4, 1))
    estimates = aggregate.interval_estimates(scores, reps=50,
                                             backend=backend)
    for name, estimate in estimates.items():
        assert estimate.lower == pytest.approx(estimate.point, abs=1e-12)
        assert estimate.upper == pytest.approx(estimate.point, abs=1e-12)


def test_single_run_gives_zero_width():
    estimate = aggregate.interval_estimates(
        _synthetic(runs=1), metrics=["iqm"], reps=20, backend="numpy")["iqm"]
    assert estimate.lower == estimate.point == estimate.upper


def test_numpy_bootstrap_is_reproducible():
    scores = _synthetic(runs=5)

    def run(seed):
        return aggregate.interval_estimates(scores, reps=100, seed=seed,
                                            backend="numpy")

    assert run(7) == run(7)
    assert run(7)["iqm"].lower != run(8)["iqm"].lower


@needs_rliable
def test_rliable_bootstrap_is_reproducible_and_restores_global_rng():
    scores = _synthetic(runs=5)

    def run():
        return aggregate.interval_estimates(scores, metrics=["iqm"], reps=100,
                                            seed=7, backend="rliable")

    np.random.seed(123)
    expected_next = np.random.random_sample()
    np.random.seed(123)
    first = run()
    assert np.random.random_sample() == expected_next
    assert run() == first


@needs_rliable
def test_numpy_and_rliable_intervals_agree():
    scores = _synthetic(runs=5)
    kwargs = dict(metrics=["iqm", "mean"], reps=600, seed=0)
    ours = aggregate.interval_estimates(scores, backend="numpy", **kwargs)
    theirs = aggregate.interval_estimates(scores, backend="rliable", **kwargs)
    for name in ("iqm", "mean"):
        width = theirs[name].upper - theirs[name].lower
        # Same resampling scheme, independent draws: the ends differ by
        # Monte-Carlo error only (a few percent of the width at 600
        # replicates).
        assert abs(ours[name].lower - theirs[name].lower) < 0.15 * width
        assert abs(ours[name].upper - theirs[name].upper) < 0.15 * width


def test_per_condition_does_not_depend_on_other_conditions():
    a = _synthetic(runs=5, seed=1)
    b = _synthetic(runs=5, seed=2) + 0.5
    both = aggregate.interval_estimates_per_condition(
        {"a": a, "b": b}, reps=100, backend="numpy")
    alone = aggregate.interval_estimates_per_condition(
        {"b": b}, reps=100, backend="numpy")
    assert both["b"] == alone["b"]
    assert both["b"]["iqm"].point > both["a"]["iqm"].point


@pytest.mark.parametrize("backend", BACKENDS)
def test_learning_curve_estimates(backend):
    runs, games, iterations = 5, 4, 3
    rng = np.random.default_rng(0)
    progress = np.arange(iterations)[None, None, :]
    curves = progress + rng.normal(0.0, 0.3, size=(runs, games, iterations))
    estimate = aggregate.learning_curve_estimates(curves, reps=100, seed=0,
                                                  backend=backend)
    for array in (estimate.point, estimate.lower, estimate.upper):
        assert array.shape == (iterations,)
    for t in range(iterations):
        assert estimate.point[t] == pytest.approx(
            aggregate.aggregate_iqm(curves[:, :, t]), abs=1e-12)
    assert np.all(estimate.lower <= estimate.point)
    assert np.all(estimate.point <= estimate.upper)
    assert np.all(np.diff(estimate.point) > 0.5)


def test_learning_curve_interval_matches_final_matrix_interval():
    # The numpy backend resamples whole runs from one stream of draws, so
    # with the same seed the last iteration's interval equals the interval
    # of that slice alone.
    curves = np.random.default_rng(4).normal(size=(6, 3, 2))
    curve = aggregate.learning_curve_estimates(
        curves, metric="mean", reps=200, seed=5, backend="numpy")
    final = aggregate.interval_estimates(
        curves[:, :, -1], metrics=["mean"], reps=200, seed=5,
        backend="numpy")["mean"]
    assert curve.lower[-1] == pytest.approx(final.lower, abs=1e-12)
    assert curve.upper[-1] == pytest.approx(final.upper, abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_probability_of_improvement_interval(backend):
    x = _synthetic(runs=5, games=3, seed=1) + 0.3
    y = _synthetic(runs=4, games=3, seed=2)
    estimate = aggregate.probability_of_improvement_interval(
        x, y, reps=100, seed=0, backend=backend)
    assert estimate.point == pytest.approx(
        aggregate.probability_of_improvement(x, y))
    assert 0.0 <= estimate.lower <= estimate.point <= estimate.upper <= 1.0
    assert estimate.point > 0.5


def test_auto_backend_falls_back_without_rliable(monkeypatch):
    monkeypatch.setitem(sys.modules, "rliable.library", None)
    scores = _synthetic(runs=5)

    def run(backend):
        return aggregate.interval_estimates(scores, reps=50, seed=0,
                                            backend=backend)

    assert run("auto") == run("numpy")
    with pytest.raises(ImportError, match="pip install rliable"):
        run("rliable")


@pytest.mark.parametrize("bad, message", [
    (np.zeros(4), r"\[runs, games\]"),
    (np.zeros((0, 3)), "must not be empty"),
    (np.array([[1.0, np.nan]]), "NaN"),
])
def test_malformed_scores_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        aggregate.aggregate_iqm(bad)


def test_bad_arguments_are_rejected():
    scores = _synthetic(runs=3)
    estimate = aggregate.interval_estimates
    with pytest.raises(ValueError, match="Unknown aggregate metric"):
        estimate(scores, metrics=["iqr"], backend="numpy")
    with pytest.raises(ValueError, match="confidence"):
        estimate(scores, confidence=95, backend="numpy")
    with pytest.raises(ValueError, match="reps"):
        estimate(scores, reps=0, backend="numpy")
    with pytest.raises(ValueError, match="backend"):
        estimate(scores, backend="jax")
    with pytest.raises(ValueError, match="same games"):
        aggregate.probability_of_improvement(np.zeros((2, 3)),
                                             np.zeros((2, 4)))
    with pytest.raises(ValueError, match="iterations"):
        aggregate.learning_curve_estimates(scores, backend="numpy")
