"""Exploration pieces shared by the agents: ε schedule and noisy collection."""

import tensorflow as tf
from tf_agents.networks import network
from tf_agents.policies import epsilon_greedy_policy
from tf_agents.utils import nest_utils

from tf_softmoe.agents import optimizers
from tf_softmoe.layers import noisy_dense


def linear_epsilon(agent_config, agent_step, noisy):
    """A callable giving the training ε at `agent_step`.

    ε stays at `epsilon_start` for the warm-up (`min_replay_history` steps),
    then decays linearly to `epsilon_end` over `epsilon_decay_steps`
    (Dopamine's `linearly_decaying_epsilon`). Noisy agents get ε = 0, the
    reference's `zero_epsilon`, unless `epsilon_with_noise` is set.

    The schedule is read at `agent_step + 1`: `agent_step` counts the steps
    already taken, while the reference's agents advance their step counter
    before choosing each action, so its t-th action uses ε(t).

    Args:
      agent_config: an `AgentConfig`.
      agent_step: a scalar int64 `tf.Variable` counting environment steps.
      noisy: whether the agent's network has noisy layers.
    """
    start = float(agent_config.epsilon_start)
    end = float(agent_config.epsilon_end)
    decay = float(agent_config.epsilon_decay_steps)
    warmup = float(agent_config.min_replay_history)
    if not agent_config.acts_epsilon_greedy(noisy):
        return lambda: tf.constant(0.0)

    def epsilon():
        steps_left = decay + warmup - (tf.cast(agent_step, tf.float32) + 1.0)
        bonus = tf.clip_by_value((start - end) * steps_left / decay, 0.0, start - end)
        return end + bonus

    return epsilon


def common_agent_kwargs(agent_config, agent_step, train_step_counter, optimizer,
                        noisy=False):
    """The TF-Agents constructor arguments both agents share.

    gamma is 1 because the replay buffer already folds γ^n' into each
    sample's bootstrap discount (0 after a terminal); target periods are
    converted from agent steps to updates; `noisy` (the network's) decides
    the ε schedule (`linear_epsilon`).
    """
    clip = agent_config.max_gradient_norm
    if optimizer is None:
        # adaptive_epsilon: ε as in Adam's Algorithm 1 (optax, hence the JAX
        # reference), not Keras's default "ε hat", which is ~30x larger early on.
        # Clipping is the optimizer's: TF-Agents' `gradient_clipping` would
        # clip each variable's gradient by its own norm, not the global norm.
        optimizer = optimizers.FusedAdam(
            learning_rate=agent_config.learning_rate, epsilon=agent_config.adam_epsilon,
            adaptive_epsilon=True, global_clipnorm=clip)
    elif clip is not None:
        raise ValueError(
            f"max_gradient_norm={clip} applies to the default optimizer only; with "
            "your own optimizer, leave max_gradient_norm at None and clip there "
            f"(e.g. tf.keras.optimizers.Adam(..., global_clipnorm={clip})).")
    return dict(
        optimizer=optimizer,
        epsilon_greedy=linear_epsilon(agent_config, agent_step, noisy),
        n_step_update=1,
        target_update_period=agent_config.train_steps_per_target_update,
        gamma=1.0,
        train_step_counter=train_step_counter)


def collect_policy_over(agent, make_policy, network, noisy):
    """The agent's collect policy (ε-greedy on the agent's schedule, which is
    ε = 0 for noisy agents by default; noise drawn when `noisy`) over any
    network with the q-network's signature,
    e.g. a copy that acts while the online network is being updated.

    Args:
      agent: the TF-Agents agent (its ε schedule).
      make_policy: `make_policy(network)` builds the greedy-capable policy.
      network: the network the policy evaluates.
      noisy: whether the network's noisy layers draw noise when acting.
    """
    if noisy:
        network = NoisyExplorationNetwork(network)
    return EpsilonGreedyPolicy(make_policy(network), epsilon=agent.epsilon_greedy)


class EpsilonGreedyPolicy(epsilon_greedy_policy.EpsilonGreedyPolicy):
    """TF-Agents' ε-greedy policy with its two draws taken from
    `noisy_dense.fresh_seed()`.

    With probability ε a uniformly random action, else the greedy one; one
    coin and one random action per row of the batch. TF-Agents draws them
    with stateful random ops, which ignore every seed under XLA; here they
    are stateless draws from one `fresh_seed()`, so inside
    `noisy_dense.seeded_draws` (as `CompiledPolicy` calls a policy) they
    follow the seed of the call, compiled or not. Policies with a single
    discrete action, no info and no action mask (the agents' Q policies).
    """

    def __init__(self, policy, epsilon, **kwargs):
        super().__init__(policy, epsilon, **kwargs)
        if (self._exploration_mask is not None
                or self.observation_and_action_constraint_splitter is not None):
            raise ValueError(
                "agents.EpsilonGreedyPolicy draws its random actions from every action; "
                "for an action mask or exploration_mask use TF-Agents' "
                "EpsilonGreedyPolicy (its draws ignore the seed under XLA).")

    def _action(self, time_step, policy_state, seed):
        del seed  # the draws come from fresh_seed(), see the class doc
        greedy = self._greedy_policy.action(time_step, policy_state)
        spec = self.action_spec
        outer_shape = nest_utils.get_outer_shape(time_step, self._time_step_spec)
        coin_seed, action_seed = tf.unstack(
            tf.random.experimental.stateless_split(noisy_dense.fresh_seed(), 2))
        coin = tf.random.stateless_uniform(outer_shape, coin_seed)
        random_action = tf.random.stateless_uniform(
            outer_shape, action_seed, minval=tf.cast(spec.minimum, spec.dtype),
            maxval=tf.cast(spec.maximum, spec.dtype) + 1, dtype=spec.dtype)
        action = tf.where(coin >= self._get_epsilon(), greedy.action, random_action)
        return greedy._replace(action=action)


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
