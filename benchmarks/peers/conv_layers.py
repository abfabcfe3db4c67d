"""The Impala encoder's convolutions, layer by layer, shared by both sides of
`benchmarks.conv_bench` (no TensorFlow at import: the torch venv imports it)."""

from benchmarks import common

# Impala ResNet on 84×84×4 (SPEC §3): per stack a 3×3 conv, a 3×3/2 max-pool
# and two residual blocks of two 3×3 convs each.
STACKS = ((84, 4, 16), (42, 16, 32), (21, 32, 32))
BLOCKS_PER_STACK = 2


def impala_layers():
    """`[(name, size, in_channels, out_channels, count)]`: each distinct conv
    shape of the encoder and how many convs of that shape one forward runs."""
    layers = []
    for i, (size, cin, cout) in enumerate(STACKS):
        layers.append((f"stack_{i}_conv", size, cin, cout, 1))
        pooled = -(-size // 2)
        layers.append((f"stack_{i}_blocks", pooled, cout, cout, 2 * BLOCKS_PER_STACK))
    return layers


def gflop(batch, size, cin, cout):
    """Multiply-adds ×2 of one 3×3 SAME convolution (= each of its gradients)."""
    return 2.0 * batch * size * size * cout * 9 * cin / 1e9


def median_ms(fn, repeats, rounds, warmup=2):
    """Median wall ms of one convolution: `fn()` runs `repeats` of them."""
    return common.time_call(fn, rounds=rounds, warmup=warmup)["median_ms"] / repeats
