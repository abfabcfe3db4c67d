"""DQN and Rainbow agents built on TF-Agents, with the papers' defaults."""

from tf_softmoe.agents.config import PRESETS
from tf_softmoe.agents.config import AgentConfig
from tf_softmoe.agents.dqn_agent import DqnAgent
from tf_softmoe.agents.factory import batch_to_transition
from tf_softmoe.agents.factory import make_agent
from tf_softmoe.agents.optimizers import FusedAdam
from tf_softmoe.agents.policies import EpsilonGreedyPolicy
from tf_softmoe.agents.rainbow_agent import RainbowAgent

__all__ = ["AgentConfig", "DqnAgent", "EpsilonGreedyPolicy", "FusedAdam", "PRESETS",
           "RainbowAgent", "batch_to_transition", "make_agent"]
