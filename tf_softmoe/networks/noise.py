"""The noise of one forward pass through a noisy `QNetwork`."""

from typing import Any, NamedTuple

import tensorflow as tf

from tf_softmoe.layers import noisy_dense


class NetworkNoise(NamedTuple):
    """Where a pass's noisy layers take their noise from.

    The reference (`FullRainbowMoENetwork`) splits the key of a pass in two:
    one key for every hidden/head noisy layer, one for the experts' first
    layers. `from_seed` does the same with a stateless seed, so two passes
    given the same seed draw the same noise (the reference's target network
    and online next-state pass), and every expert shares one draw.

    Attributes:
      features: noise source of the hidden and head `NoisyDense` layers.
      experts: noise source of the experts' first (noisy) layer.
      Each is a `SeededNoise`, an `ExplicitNoise` or None (the layer draws
      its own, one draw for the batch).
    """

    features: Any = None
    experts: Any = None

    @classmethod
    def from_seed(cls, seed, batch_size=None):
        """Both groups from one `[2]` int seed; `batch_size` B gives one draw
        per sample (`[B, size]` noise), None one draw for the batch."""
        seeds = tf.random.experimental.stateless_split(tf.convert_to_tensor(seed), 2)
        return cls(features=noisy_dense.SeededNoise(seeds[0], batch_size),
                   experts=noisy_dense.SeededNoise(seeds[1], batch_size))

    @classmethod
    def fresh(cls, batch_size=None):
        """A new random seed (one pass's fresh noise)."""
        return cls.from_seed(noisy_dense.fresh_seed(), batch_size)
