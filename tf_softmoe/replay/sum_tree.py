"""A vectorised NumPy sum tree for proportional prioritized replay.

The tree stores one non-negative priority per leaf and keeps, in every internal
node, the sum of its two children, so that the total priority is read at the
root and a leaf can be drawn with probability proportional to its priority by
one root-to-leaf descent (Schaul et al., 2016, "Prioritized Experience Replay",
Appendix B.2.1).

Layout: a single float64 array of ``2 * capacity`` nodes in heap order. Node 1
is the root, node ``k`` has children ``2k`` and ``2k + 1``, and leaf ``i``
lives at node ``capacity + i`` (node 0 is unused). This works for any
capacity, not only powers of two: every node ``>= 2`` has exactly one parent,
so node 1 sums all leaves. For capacities that are not powers of two the
leaves sit at two different depths and the descent visits them in a fixed
permuted order, which does not change the sampling distribution (each leaf
still owns an interval of the cumulative mass as long as its priority).
Memory: 16 bytes per leaf.

All batch operations are vectorised over the batch; only the tree levels are
looped over.
"""

import numpy as np


class SumTree:
    """Binary sum tree over ``capacity`` non-negative float64 priorities.

    Args:
        capacity: number of leaves, a positive integer.

    Raises:
        ValueError: if ``capacity`` is not a positive integer.
    """

    def __init__(self, capacity):
        if int(capacity) != capacity or capacity < 1:
            raise ValueError(
                f"SumTree capacity must be a positive integer, got "
                f"{capacity!r}.")
        self._capacity = int(capacity)
        # np.zeros maps zero pages lazily, so a large tree costs no resident
        # memory until leaves are written.
        self._nodes = np.zeros(2 * self._capacity, dtype=np.float64)
        # The deepest leaf is at depth ceil(log2(2 * capacity)) - 1 below the
        # root; a descent needs that many steps.
        self._depth = max(int(np.ceil(np.log2(2 * self._capacity))) - 1, 0)
        # Every node above depth floor(log2(capacity)) is internal, so the
        # descent skips the "already at a leaf" check on those levels.
        self._uniform_depth = int(np.floor(np.log2(self._capacity)))

    @property
    def capacity(self):
        """Number of leaves."""
        return self._capacity

    @property
    def nodes(self):
        """The raw node array (read it, do not write it)."""
        return self._nodes

    @property
    def total(self):
        """Sum of all leaf priorities (the root)."""
        return float(self._nodes[1])

    @property
    def nbytes(self):
        """Bytes held by the node array."""
        return int(self._nodes.nbytes)

    def get(self, indices):
        """Priorities of the leaves ``indices`` (array-like of ints)."""
        indices = self._check_indices(indices)
        return self._nodes[indices + self._capacity]

    def leaves(self):
        """A read-only view of all leaf priorities, in leaf order."""
        view = self._nodes[self._capacity:]
        view.flags.writeable = False
        return view

    def set(self, indices, priorities):
        """Sets leaf priorities and refreshes every ancestor sum.

        With duplicate indices the last value wins. Each touched parent is
        recomputed as ``left + right`` (not by adding a delta), so the tree
        never accumulates rounding drift and ``rebuild`` reproduces it exactly.

        Args:
            indices: int array-like [K] of leaf indices in ``[0, capacity)``.
            priorities: float array-like [K] (or a scalar), each finite and
                ``>= 0``.

        Raises:
            ValueError: on out-of-range indices, mismatched lengths, or
                negative / non-finite priorities.
        """
        indices = self._check_indices(indices)
        priorities = np.broadcast_to(
            np.asarray(priorities, dtype=np.float64), indices.shape)
        self._check_priorities(priorities)
        if indices.size == 0:
            return
        nodes = indices + self._capacity
        self._nodes[nodes] = priorities
        # One walker per updated leaf climbs to the root, refreshing each node
        # it passes. Walkers that meet write the same value, so duplicates need
        # no removal. Leaves sit at up to two depths, so a node can be
        # refreshed in more than one round; its last refresh comes after all
        # of its children's, which makes the final value exact.
        parents = nodes >> 1
        parents = parents[parents >= 1]
        while parents.size:
            self._nodes[parents] = (self._nodes[2 * parents]
                                    + self._nodes[2 * parents + 1])
            parents >>= 1
            parents = parents[parents >= 1]

    def set_one(self, index, priority):
        """Scalar fast path of ``set`` for one leaf (used once per add)."""
        index = int(index)
        if not 0 <= index < self._capacity:
            raise ValueError(
                f"SumTree leaf index {index} is outside "
                f"[0, {self._capacity}).")
        priority = float(priority)
        if not np.isfinite(priority) or priority < 0.0:
            raise ValueError(
                f"Priorities must be finite and >= 0, got {priority!r}.")
        nodes = self._nodes
        node = index + self._capacity
        nodes[node] = priority
        node >>= 1
        while node >= 1:
            nodes[node] = nodes[2 * node] + nodes[2 * node + 1]
            node >>= 1

    def find(self, values):
        """Leaves whose cumulative-priority interval contains each value.

        Descends from the root: go left while the value is below the left
        child's sum, else subtract that sum and go right. A right child with
        zero sum is never entered (the value is then clamped into the left
        subtree), so rounding at the top end of the mass can never return a
        zero-priority leaf while the total is positive.

        Args:
            values: float array-like [K] in ``[0, total]``.

        Returns:
            int64 array [K] of leaf indices.

        Raises:
            ValueError: if the total priority is zero.
        """
        values = np.array(values, dtype=np.float64, copy=True).reshape(-1)
        if not self._nodes[1] > 0.0:
            raise ValueError(
                "Cannot sample from a SumTree whose total priority is 0; set "
                "some positive priorities first.")
        nodes = np.ones(values.shape, dtype=np.int64)
        cap = self._capacity
        tree = self._nodes
        for level in range(self._depth):
            left = 2 * nodes
            if level < self._uniform_depth:
                left_sum = tree[left]
                go_right = (values >= left_sum) & (tree[left + 1] > 0.0)
                values -= left_sum * go_right
                nodes = left + go_right
            else:
                # Below the shallowest leaf some walkers have already arrived;
                # they read the unused node 0 and stay where they are.
                internal = nodes < cap
                left = np.where(internal, left, 0)
                left_sum = tree[left]
                go_right = (internal & (values >= left_sum)
                            & (tree[left + 1] > 0.0))
                values -= left_sum * go_right
                nodes = np.where(internal, left + go_right, nodes)
        return nodes - cap

    def stratified_sample(self, batch_size, rng):
        """Draws ``batch_size`` leaves, one per equal slice of the total mass.

        The mass ``[0, total)`` is split into ``batch_size`` equal segments and
        one value is drawn uniformly in each (as Dopamine's prioritized replay
        does), which lowers the variance of the batch composition relative to
        independent draws while keeping each draw's marginal probability
        ``priority / total``.

        Args:
            batch_size: positive int.
            rng: a ``numpy.random.Generator``.

        Returns:
            int64 array [batch_size] of leaf indices.
        """
        total = self._nodes[1]
        offsets = (np.arange(batch_size, dtype=np.float64)
                   + rng.random(batch_size))
        return self.find(offsets * (total / batch_size))

    def rebuild(self):
        """Recomputes every internal node from the leaves, bottom-up.

        Nodes in ``[lo, hi)`` with ``2 * lo >= hi`` have all their children
        at indices ``>= hi``, which are final once processed, so the internal
        nodes are refreshed in such ranges from the top index down.
        """
        hi = self._capacity
        while hi > 1:
            lo = (hi + 1) // 2
            parents = np.arange(lo, hi)
            self._nodes[parents] = (self._nodes[2 * parents]
                                    + self._nodes[2 * parents + 1])
            hi = lo

    def load_nodes(self, nodes):
        """Replaces the node array (from a checkpoint) after checking it."""
        nodes = np.asarray(nodes, dtype=np.float64)
        if nodes.shape != self._nodes.shape:
            raise ValueError(
                f"SumTree node array has shape {nodes.shape}, expected "
                f"{self._nodes.shape} for capacity {self._capacity}.")
        self._check_priorities(nodes[self._capacity:])
        self._nodes[...] = nodes

    def _check_indices(self, indices):
        return check_indices(indices, self._capacity, "SumTree leaf indices")

    @staticmethod
    def _check_priorities(priorities):
        if priorities.size and not np.all(np.isfinite(priorities)):
            raise ValueError(
                "Priorities must be finite; got NaN or inf (check the loss "
                "that produced them).")
        if priorities.size and priorities.min() < 0.0:
            raise ValueError(
                f"Priorities must be >= 0, got a minimum of "
                f"{priorities.min()}.")


def check_indices(indices, capacity, what="indices"):
    """Integer indices in [0, capacity) as a flat int64 array.

    Raises:
        ValueError: non-integer dtype or an index out of range, naming `what`.
    """
    indices = np.asarray(indices)
    if indices.size and not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(
            f"{what} must be integers, got dtype {indices.dtype}.")
    indices = indices.astype(np.int64, copy=False).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() >= capacity):
        raise ValueError(
            f"{what} must lie in [0, {capacity}), got min {indices.min()} "
            f"and max {indices.max()}.")
    return indices
