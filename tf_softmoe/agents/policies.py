"""Exploration pieces shared by the agents: ε schedule and noisy collection."""

import tensorflow as tf
from tf_agents.networks import network


def linear_epsilon(agent_config, agent_step):
    """A callable giving Dopamine's linearly decaying ε at `agent_step`.

    ε stays at `epsilon_start` for the warm-up (`min_replay_history` steps),
    then decays linearly to `epsilon_end` over `epsilon_decay_steps`.

    Args:
      agent_config: an `AgentConfig`.
      agent_step: a scalar int64 `tf.Variable` counting environment steps.
    """
    start = float(agent_config.epsilon_start)
    end = float(agent_config.epsilon_end)
    decay = float(agent_config.epsilon_decay_steps)
    warmup = float(agent_config.min_replay_history)

    def epsilon():
        steps_left = decay + warmup - tf.cast(agent_step, tf.float32)
        bonus = tf.clip_by_value((start - end) * steps_left / decay, 0.0, start - end)
        return end + bonus

    return epsilon


class NoisyExplorationNetwork(network.Network):
    """Calls a network with `training=True` so that its noisy layers draw noise.

    TF-Agents' Q policies call their network without `training`, which turns
    noisy layers off; the collect policy of a noisy-net agent needs the noise
    (it *is* the exploration). This wrapper shares the wrapped network's
    variables; it owns none.
    """

    def __init__(self, q_network, name="NoisyExplorationNetwork"):
        super().__init__(input_tensor_spec=q_network.input_tensor_spec,
                         state_spec=q_network.state_spec, name=name)
        self._q_network = q_network

    @property
    def num_atoms(self):
        return self._q_network.num_atoms

    def call(self, observation, step_type=None, network_state=(), training=False):
        del training  # exploration noise is the point of this wrapper
        return self._q_network(observation, step_type=step_type,
                               network_state=network_state, training=True)
