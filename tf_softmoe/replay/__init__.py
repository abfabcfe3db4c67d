"""Replay memory: frame-once circular buffer, n-step, prioritized sampling."""

from tf_softmoe.replay.frame_replay import FrameReplayBuffer
from tf_softmoe.replay.sum_tree import SumTree

__all__ = [
    "FrameReplayBuffer",
    "SumTree",
]
