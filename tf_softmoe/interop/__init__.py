"""Bridges to other implementations of the paper's networks.

`tf_softmoe.interop.dopamine` loads parameters trained with the official
code (dopamine-rl, `dopamine/labs/moes`, JAX/Flax) into a `QNetwork`.
"""
