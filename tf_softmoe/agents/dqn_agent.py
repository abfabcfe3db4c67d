"""DQN (Mnih et al., 2015) on TF-Agents' DqnAgent, with Dopamine's defaults."""

import tensorflow as tf
from tf_agents.agents.dqn import dqn_agent
from tf_agents.policies import q_policy

from tf_softmoe.agents import _common


def squared_error(targets, predictions):
    """(target − prediction)², element-wise: the reference's `mse_loss`
    (dopamine/jax/losses.py), with no ½; the agent averages it over the batch
    as the reference's DQN does."""
    return tf.math.squared_difference(targets, predictions)


def huber(targets, predictions):
    """Huber loss with δ = 1, element-wise: ½x² for |x| <= 1, |x| − ½ beyond
    (x = target − prediction), as the reference's `huber_loss`."""
    return tf.compat.v1.losses.huber_loss(
        targets, predictions, reduction=tf.compat.v1.losses.Reduction.NONE)


class DqnAgent(_common.AgentMixin, dqn_agent.DqnAgent):
    """TF-Agents DqnAgent fed with n-step transitions from `FrameReplayBuffer`.

    The replay buffer computes the n-step return R and the bootstrap discount
    γ^n' (0 after a terminal), so the TF-Agents agent is built with gamma=1:
    its target `R + 1 · discount · max_a Q_target(s', a)` is then exactly
    Dopamine's. The per-sample TD loss comes back in `loss_info.extra.td_loss`
    (for priorities), importance weights go in through `weights`.

    Args:
      time_step_spec, action_spec: the environment's specs.
      q_network: a `tf_softmoe.networks.QNetwork` with head "dqn".
      agent_config: an `AgentConfig` of kind "dqn".
      agent_step: int64 variable counting environment steps (drives ε).
      train_step_counter: int64 variable counting gradient updates.
      optimizer: optional; by default `FusedAdam(lr, eps)` from the config,
        clipping the global norm at `max_gradient_norm` when set.
    """

    _per_sample_loss_field = "td_loss"

    def __init__(self, time_step_spec, action_spec, q_network, agent_config,
                 agent_step, train_step_counter=None, optimizer=None):
        super().__init__(
            time_step_spec, action_spec, q_network=q_network,
            td_errors_loss_fn=(huber if agent_config.loss == "huber"
                               else squared_error),
            **self._setup(q_network, agent_config, agent_step,
                          train_step_counter, optimizer))
        self._use_own_collect_policy()
        self.build_optimizer()

    def _greedy_policy_over(self, network):
        return q_policy.QPolicy(self.time_step_spec, self.action_spec,
                                q_network=network)

    def _compute_next_q_values(self, next_time_steps, info):
        if not self.agent_config.double_q:
            return super()._compute_next_q_values(next_time_steps, info)
        # Double DQN: the online network picks a', the target network rates it.
        online, _ = self._q_network(next_time_steps.observation,
                                    step_type=next_time_steps.step_type)
        best = tf.argmax(online, axis=-1, output_type=tf.int32)
        target, _ = self._target_q_network(next_time_steps.observation,
                                           step_type=next_time_steps.step_type)
        return tf.gather(target, best, batch_dims=1)
