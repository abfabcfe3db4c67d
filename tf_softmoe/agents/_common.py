"""What `DqnAgent` and `RainbowAgent` share, beside their TF-Agents bases."""

import tensorflow as tf

from tf_softmoe.agents import policies


class AgentMixin:
    """The part of a tf_softmoe agent that does not depend on its head.

    A subclass lists it before its TF-Agents base and, in `__init__`, passes
    `self._setup(...)`'s keyword arguments to the base's constructor, then
    calls `self._use_own_collect_policy()` and `self.build_optimizer()`; it
    supplies
    `_greedy_policy_over(network)` and names the `LossInfo.extra` field that
    holds the per-sample loss in `_per_sample_loss_field`.

    The public members give code outside the agent classes the networks, the
    ε schedule and single-batch updates. TF-Agents keeps these protected (`_q_network`, `_train`, `_loss`,
    `_epsilon_greedy`); its public `train`/`loss` check the experience against
    the agent's specs and wrap `train` in a `tf.function`, which the learner
    does itself (one fixed signature, optionally XLA). The members here are
    read-only views and plain calls: they add no tracked attributes, so the
    `tf.train.Checkpoint(agent=...)` object graph is TF-Agents' own.
    """

    _per_sample_loss_field = None

    def _setup(self, q_network, agent_config, agent_step, train_step_counter,
               optimizer):
        """Stores the configuration and returns the TF-Agents constructor
        arguments both agents share (`policies.common_agent_kwargs`).

        Called before the TF-Agents constructor, in this order, as the
        checkpoints' object graph records `agent_step` first."""
        self.agent_config = agent_config
        # Noisy nets are the network's; they decide ε and the collect policy.
        self.noisy = q_network.config.noisy
        self.agent_step = agent_step
        return policies.common_agent_kwargs(agent_config, agent_step,
                                            train_step_counter, optimizer,
                                            noisy=self.noisy)

    def _use_own_collect_policy(self):
        """Collects with `collect_policy_for(q_network)` instead of TF-Agents'
        collect policy: its ε-greedy draws follow `noisy_dense.seeded_draws`
        (TF-Agents' ignore every seed under XLA), and with noisy nets it calls
        the network with noise drawn (TF-Agents' calls it without `training`,
        so without noise)."""
        self._collect_policy = self.collect_policy_for(self._q_network)

    def build_optimizer(self):
        """Makes the optimizer's variables (Adam's moments) for the Q-network's
        trainable weights now instead of at the first update.

        A checkpoint read before the first update then restores them at once.
        Without this, TensorFlow defers their restore to the first update, and
        a checkpoint written before one (a run resumed only to finish its
        final evaluation) silently leaves them out. Keras optimizers (the
        default `FusedAdam`, any `tf.keras.optimizers.Optimizer`, and the
        legacy ones) are built; another optimizer keeps its own lazy slots.
        Built ahead, the variables are the ones the first update would make,
        in the same order, so checkpoints are unchanged.
        """
        weights = self._q_network.trainable_weights
        optimizer = self._optimizer
        if isinstance(optimizer, tf.keras.optimizers.Optimizer):
            optimizer.build(weights)
        elif isinstance(optimizer, tf.keras.optimizers.legacy.Optimizer):
            optimizer._create_all_weights(weights)  # pylint: disable=protected-access

    def collect_policy_for(self, network):
        """This agent's collect policy evaluated with `network` (a network of
        the same configuration, e.g. `Trainer`'s acting copy)."""
        return policies.collect_policy_over(self, self._greedy_policy_over,
                                            network, noisy=self.noisy)

    def per_sample_loss(self, loss_info):
        """Per-sample loss of `loss_info` (from `train_on` or `loss_on`), for
        priority updates."""
        return getattr(loss_info.extra, self._per_sample_loss_field)

    @property
    def q_network(self):
        """The online Q-network (the one trained, exported and acted with)."""
        return self._q_network

    @property
    def target_q_network(self):
        """The target Q-network (TF-Agents' copy of the online network)."""
        return self._target_q_network

    @property
    def optimizer(self):
        """The optimizer `train_on` applies the gradients with."""
        return self._optimizer

    @property
    def epsilon_greedy(self):
        """The training ε schedule: a callable returning the current ε
        (0 for noisy agents unless `epsilon_with_noise`)."""
        return self._epsilon_greedy

    def train_on(self, transition, weights=None):
        """One gradient update on `transition` (a `Transition`, e.g. from
        `batch_to_transition`), each sample's loss scaled by `weights`
        (importance weights; None for 1). Runs eagerly unless called inside
        a `tf.function`; returns TF-Agents' `LossInfo`."""
        return self._train(transition, weights)

    def update_target_periodically(self):
        """Advances the target-sync counter, syncing the target network every
        `train_steps_per_target_update` calls: the step `train_on` ends with,
        for a caller that computes and applies the gradients itself (the
        learner under a `tf.distribute` strategy, in cross-replica context)."""
        return self._update_target()

    def loss_on(self, transition, weights=None, training=False):
        """The loss on `transition` without updating anything; `training`
        turns noise on in noisy layers. Returns TF-Agents' `LossInfo`, with
        the per-sample loss in `per_sample_loss(loss_info)`."""
        return self._loss(transition, weights=weights, training=training)
