"""Rainbow (Hessel et al., 2018) on TF-Agents' CategoricalDqnAgent.

TF-Agents' categorical loss ignores importance weights and returns no
per-sample loss, and has no double-Q; this agent computes the C51 loss itself
(re-using TF-Agents' projection) so that prioritized replay can be updated
after every step and importance-weighted.
"""

import collections

import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.agents.categorical_dqn import categorical_dqn_agent
from tf_agents.policies import categorical_q_policy

from tf_softmoe import networks
from tf_softmoe.agents import _common
from tf_softmoe.layers import noisy_dense

RainbowLossInfo = collections.namedtuple(
    "RainbowLossInfo", ["per_sample_loss", "td_error"])


def c51_target(reward, discount, next_probs, support):
    """Projected C51 target m = Φ(R + γ^n' z, p(s', a*)) on the support z.

    Args:
      reward: [B] n-step returns R.
      discount: [B] bootstrap factors γ^n' (0 after a terminal).
      next_probs: [B, atoms] target-network probabilities at a*.
      support: [atoms] evenly spaced atoms z.

    Returns:
      [B, atoms] target probabilities (TF-Agents' `project_distribution`).
    """
    target_support = reward[:, None] + discount[:, None] * support[None, :]
    return categorical_dqn_agent.project_distribution(target_support, next_probs, support)


class RainbowAgent(_common.AgentMixin, categorical_dqn_agent.CategoricalDqnAgent):
    """C51 + n-step + prioritized replay + double-Q + dueling + noisy nets.

    Loss per sample (Bellemare et al., 2017), with support z of `num_atoms`
    atoms on [v_min, v_max], n-step return R and bootstrap discount γ^n'
    (0 after a terminal), both from the replay buffer:

        a* = argmax_a Σ_j z_j p_online(s', a)_j   (double-Q; target net if off)
        m  = Φ(R + γ^n' z, p_target(s', a*))      projection onto z
        ℓ  = −Σ_j m_j log p_online(s, a)_j        cross-entropy
        L  = mean_b w_b ℓ_b                       w: importance weights

    `loss_info.extra.per_sample_loss` holds ℓ for the priority update and
    `loss_info.extra.td_error` the difference of the means E[m] − E[Z(s,a)]
    (priority = (ℓ + 1e-10)^α, Dopamine's sqrt for α = 0.5). With noisy nets
    the loss draws noise as the reference (`loss_noise`): one draw per sample
    for the online pass on s, one shared draw for the target network and the
    online pass on s'; the collect policy draws noise with ε = 0, the greedy
    policy uses the means except in the experts (`expert_noise_in_eval`).

    Args:
      time_step_spec, action_spec: the environment's specs.
      q_network: a `tf_softmoe.networks.QNetwork` with head "c51".
      agent_config: an `AgentConfig` of kind "rainbow".
      agent_step: int64 variable counting environment steps (drives ε).
      train_step_counter: int64 variable counting gradient updates.
      optimizer: optional; by default `FusedAdam(lr, eps)` from the config,
        clipping the global norm at `max_gradient_norm` when set.
    """

    _per_sample_loss_field = "per_sample_loss"

    def __init__(self, time_step_spec, action_spec, q_network, agent_config,
                 agent_step, train_step_counter=None, optimizer=None):
        super().__init__(
            time_step_spec, action_spec, categorical_q_network=q_network,
            min_q_value=agent_config.v_min, max_q_value=agent_config.v_max,
            **self._setup(q_network, agent_config, agent_step,
                          train_step_counter, optimizer))
        self._use_own_collect_policy()
        self.build_optimizer()

    def _greedy_policy_over(self, network):
        config = self.agent_config
        return categorical_q_policy.CategoricalQPolicy(
            self.time_step_spec, self.action_spec, network, config.v_min,
            config.v_max)

    @property
    def support(self):
        return self._support

    def _loss(self, experience, td_errors_loss_fn=None, gamma=1.0,
              reward_scale_factor=1.0, weights=None, training=False):
        del td_errors_loss_fn, gamma  # the C51 loss; γ^n' comes with the batch
        time_steps, policy_steps, next_time_steps = self._as_transition(experience)
        actions = tf.cast(policy_steps.action, tf.int32)
        support = self._support
        online_noise, next_noise = self.loss_noise(time_steps.observation, training)
        logits, _ = self._q_network(time_steps.observation, training=training,
                                    noise=online_noise)
        chosen_logits = tf.gather(logits, actions, batch_dims=1)  # [B, atoms]

        target_logits, _ = self._target_q_network(
            next_time_steps.observation, training=training, noise=next_noise)
        target_probs = tf.nn.softmax(target_logits, axis=-1)
        if self.agent_config.double_q:
            online_next, _ = self._q_network(next_time_steps.observation,
                                             training=training, noise=next_noise)
            selector = tf.nn.softmax(online_next, axis=-1)
        else:
            selector = target_probs
        best = tf.argmax(tf.reduce_sum(selector * support, axis=-1), axis=-1,
                         output_type=tf.int32)
        next_probs = tf.gather(target_probs, best, batch_dims=1)  # [B, atoms]

        target = tf.stop_gradient(c51_target(
            reward_scale_factor * next_time_steps.reward, next_time_steps.discount,
            next_probs, support))
        per_sample = tf.nn.softmax_cross_entropy_with_logits(
            labels=target, logits=chosen_logits)
        weighted = (per_sample if weights is None
                    else tf.cast(weights, per_sample.dtype) * per_sample)
        # The mean over the global batch: under a tf.distribute strategy each
        # replica divides its sum by the global batch size, so the summed
        # gradients are the single-device ones (a per-replica mean would make
        # them N times too large); on one device the batch mean.
        loss = tf.nn.compute_average_loss(weighted)
        if self._q_network.losses:
            loss += tf.nn.scale_regularization_loss(tf.add_n(self._q_network.losses))
        # TD error of the means: E[target] − E[Z(s, a)].
        chosen_q = tf.reduce_sum(tf.nn.softmax(chosen_logits, axis=-1) * support, -1)
        td_error = tf.reduce_sum(target * support, axis=-1) - chosen_q
        return tf_agent.LossInfo(loss, RainbowLossInfo(
            per_sample_loss=per_sample, td_error=td_error))

    def loss_noise(self, observation, training):
        """(online pass noise, bootstrap passes noise) of one loss, as the
        reference's `train` draws them: the online pass on s gets a draw per
        sample (one for the batch without `per_sample_noise`); the target
        network and the online pass on s' share one draw, the same for both
        and for every sample. (None, None) when not noisy or not training."""
        config = self.agent_config
        if not (self.noisy and training):
            return None, None
        seeds = tf.random.experimental.stateless_split(noisy_dense.fresh_seed(), 2)
        batch_size = tf.shape(observation)[0] if config.per_sample_noise else None
        return (networks.NetworkNoise.from_seed(seeds[0], batch_size),
                networks.NetworkNoise.from_seed(seeds[1]))
