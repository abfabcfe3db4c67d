"""What `DqnAgent` and `RainbowAgent` share, beside their TF-Agents bases."""


class AgentMixin:
    """Public access to a tf_softmoe agent's networks, ε schedule and
    single-batch update, for code outside the agent classes.

    TF-Agents keeps these protected (`_q_network`, `_train`, `_loss`,
    `_epsilon_greedy`); its public `train`/`loss` check the experience against
    the agent's specs and wrap `train` in a `tf.function`, which the learner
    does itself (one fixed signature, optionally XLA). The members here are
    read-only views and plain calls: they add no tracked attributes, so the
    `tf.train.Checkpoint(agent=...)` object graph is TF-Agents' own.
    """

    @property
    def q_network(self):
        """The online Q-network (the one trained, exported and acted with)."""
        return self._q_network

    @property
    def target_q_network(self):
        """The target Q-network (TF-Agents' copy of the online network)."""
        return self._target_q_network

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

    def loss_on(self, transition, weights=None, training=False):
        """The loss on `transition` without updating anything; `training`
        turns noise on in noisy layers. Returns TF-Agents' `LossInfo`, with
        the per-sample loss in `per_sample_loss(loss_info)`."""
        return self._loss(transition, weights=weights, training=training)
