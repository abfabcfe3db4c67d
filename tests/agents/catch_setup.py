"""A small Catch game and fast agent settings shared by the agent and loop
tests: a SoftMoE network that learns it within about a thousand steps."""

from tf_softmoe import config as config_lib
from tf_softmoe import envs
from tf_softmoe import networks

SMALL_NET_FIELDS = dict(encoder="nature", penultimate="softmoe", num_experts=2,
                        hidden_units=16)
# The small network with a plain Q-value head (tests of networks alone).
SMALL_NET = networks.NetworkConfig(**SMALL_NET_FIELDS)


def catch(seed):
    return envs.CatchEnv(rows=6, columns=3, observation_shape=(12, 6, 1), seed=seed)


def fast_setup(preset, **overrides):
    """(AgentConfig, NetworkConfig) of `preset` at fast settings with the
    small network; `overrides` are fields of either (each has one owner)."""
    values = dict(min_replay_history=200, update_period=1, target_update_period=100,
                  epsilon_decay_steps=600, replay_capacity=5000, learning_rate=1e-3,
                  **SMALL_NET_FIELDS)
    if preset != "dqn":
        values.update(n_step=1, v_min=-1.0, v_max=1.0, num_atoms=21)
    values.update(overrides)
    config = config_lib.ExperimentConfig.preset(preset, game="catch", **values)
    return config.agent, config.network


def fast_config(preset, **overrides):
    """The `AgentConfig` of `fast_setup`."""
    return fast_setup(preset, **overrides)[0]
