"""Peer implementations timed against tf_softmoe's train step.

Each peer runs in its own virtual environment (see `setup_envs`) as a worker
process that speaks the line protocol of `protocol`: the JAX peer drives
dopamine-rl 4.1.2's own `dopamine/labs/moes` train steps, the PyTorch peer
is our own PyTorch version of the same networks and losses (eager and
`torch.compile`). Nothing here imports TensorFlow.
"""
