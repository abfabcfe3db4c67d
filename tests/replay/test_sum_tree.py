"""Tests of the vectorised NumPy sum tree."""

import numpy as np
import pytest

from tf_softmoe.replay import SumTree

# 0.999 quantile of the chi-square distribution with 9 degrees of freedom.
CHI2_9DOF_999 = 27.877


def _check_sums(tree):
    """Every internal node equals the sum of its two children."""
    nodes = tree.nodes
    parents = np.arange(1, tree.capacity)
    np.testing.assert_array_equal(nodes[parents],
                                  nodes[2 * parents] + nodes[2 * parents + 1])


@pytest.mark.parametrize("capacity", [1, 2, 3, 5, 8, 13, 64, 100])
def test_random_updates_keep_every_sum_exact(capacity):
    rng = np.random.default_rng(capacity)
    tree = SumTree(capacity)
    reference = np.zeros(capacity)
    for _ in range(30):
        count = rng.integers(1, capacity + 1)
        indices = rng.integers(0, capacity, size=count)
        values = rng.random(count) * 10
        tree.set(indices, values)
        # NumPy fancy assignment keeps the last value of a duplicate index.
        reference[indices] = values
        _check_sums(tree)
        np.testing.assert_array_equal(tree.get(np.arange(capacity)), reference)
        np.testing.assert_allclose(tree.total, reference.sum(), rtol=1e-12)


@pytest.mark.parametrize("capacity", [1, 3, 7, 16, 33])
def test_set_one_and_rebuild_reproduce_the_vectorised_set(capacity):
    rng = np.random.default_rng(7)
    by_batch, by_one = SumTree(capacity), SumTree(capacity)
    for _ in range(20):
        indices = rng.integers(0, capacity, size=3)
        values = rng.random(3)
        by_batch.set(indices, values)
        for index, value in zip(indices, values):
            by_one.set_one(index, value)
    np.testing.assert_array_equal(by_batch.nodes, by_one.nodes)
    rebuilt = SumTree(capacity)
    rebuilt.nodes[capacity:] = by_batch.nodes[capacity:]
    rebuilt.rebuild()
    np.testing.assert_array_equal(rebuilt.nodes, by_batch.nodes)


@pytest.mark.parametrize("capacity", [3, 6, 10])
def test_find_covers_each_leaf_with_an_interval_of_its_priority(capacity):
    rng = np.random.default_rng(0)
    tree = SumTree(capacity)
    priorities = rng.integers(0, 4, size=capacity).astype(np.float64)
    priorities[0] = 2.0
    tree.set(np.arange(capacity), priorities)
    # Integer priorities: a fine grid of values hits each leaf in proportion
    # to its priority, exactly, whatever order the descent visits leaves in.
    steps_per_unit = 64
    grid = (np.arange(int(tree.total) * steps_per_unit) + 0.5) / steps_per_unit
    counts = np.bincount(tree.find(grid), minlength=capacity)
    np.testing.assert_array_equal(counts, priorities * steps_per_unit)


def test_find_never_returns_a_zero_leaf_at_the_edges_of_the_mass():
    tree = SumTree(7)
    tree.set([0, 3, 4], [0.1, 0.2, 0.3])
    values = np.array([0.0, tree.total, np.nextafter(tree.total, 1.0),
                       tree.total * (1 + 1e-12)])
    leaves = tree.find(values)
    assert set(leaves.tolist()) <= {0, 3, 4}
    assert tree.get(leaves).min() > 0.0


def test_stratified_sample_frequencies_follow_the_priorities():
    rng = np.random.default_rng(1)
    capacity = 10
    tree = SumTree(capacity)
    priorities = np.arange(1.0, capacity + 1.0)
    tree.set(np.arange(capacity), priorities)
    draws = np.concatenate(
        [tree.stratified_sample(32, rng) for _ in range(625)])
    counts = np.bincount(draws, minlength=capacity)
    expected = len(draws) * priorities / priorities.sum()
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < CHI2_9DOF_999, (counts, expected)
    uniform = np.full(capacity, len(draws) / capacity)
    assert np.sum((counts - uniform) ** 2 / uniform) > 10 * CHI2_9DOF_999


def test_stratified_sample_takes_one_draw_per_segment():
    tree = SumTree(4)
    tree.set(np.arange(4), [1.0, 1.0, 1.0, 1.0])
    draws = tree.stratified_sample(4, np.random.default_rng(3))
    # Four equal leaves and four equal segments: one draw per leaf.
    assert sorted(draws.tolist()) == [0, 1, 2, 3]


def test_errors_name_the_problem():
    tree = SumTree(4)
    with pytest.raises(ValueError, match="total priority is 0"):
        tree.find([0.5])
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        tree.set([4], [1.0])
    with pytest.raises(ValueError, match=r">= 0"):
        tree.set([1], [-1.0])
    with pytest.raises(ValueError, match="finite"):
        tree.set([1], [np.nan])
    with pytest.raises(ValueError, match="integers"):
        tree.set([1.5], [1.0])
    with pytest.raises(ValueError, match="positive integer"):
        SumTree(0)
    with pytest.raises(ValueError, match="shape"):
        tree.load_nodes(np.zeros(5))
