"""Agent hyper-parameters with the Dopamine defaults the papers use (SPEC §4)."""

import dataclasses
from typing import Optional

from tf_softmoe import _config

KINDS = ("dqn", "rainbow")
PRESETS = ("dqn", "rainbow", "der")
LOSSES = ("mse", "huber")


@dataclasses.dataclass(frozen=True)
class AgentConfig(_config.DictConfig):
    """Every hyper-parameter of the DQN and Rainbow agents.

    Use `AgentConfig.preset("dqn" | "rainbow" | "der", **overrides)`; the
    field defaults are Rainbow's (the paper's main agent). Step counts are in
    agent (environment) steps, as Dopamine counts them.

    Attributes:
      kind: "dqn" (TF-Agents DqnAgent, Q-value head) or "rainbow"
        (CategoricalDqnAgent, C51 head).
      gamma: discount γ.
      n_step: n of the n-step return (computed by the replay buffer).
      learning_rate, adam_epsilon: Adam's step size and ε.
      loss: DQN only: "mse" (δ² = (target − Q)², the reference's `mse_loss`,
        no ½) or "huber" (δ = 1: ½δ² for |δ| <= 1, |δ| − ½ beyond).
      num_atoms, v_min, v_max: the C51 support.
      double_q: select the next action with the online network.
      dueling: dueling head.
      noisy: noisy nets (head, hidden layer, first expert layer); the collect
        policy draws fresh noise, the greedy/eval policy uses the means (but
        see expert_noise_in_eval).
      noisy_sigma0: σ0 of the noisy layers (0.1 as the reference).
      per_sample_noise: with `noisy`, the training loss's online pass gives
        every sample its own noise draw, as the reference (a key per sample);
        False: one draw for the whole batch (cheaper, see
        benchmarks/noisy_dense_bench.py). The bootstrap passes (target network
        and double-Q online next-state pass) always share one draw for the
        batch, the same for both, as the reference.
      expert_noise_in_eval: with `noisy` and a MoE block, the experts stay
        noisy in the greedy/evaluation policy, as the reference's experts
        (its `eval_mode` never reaches them), which the paper's DER
        evaluation scores include. False: evaluation without any noise.
      epsilon_with_noise: with `noisy`, still act ε-greedily on the linear
        schedule. False (the reference's `zero_epsilon`): noisy agents train
        with ε = 0 and explore through the noise alone. DQN (not noisy)
        always follows the schedule.
      min_replay_history: agent steps collected before learning starts.
      update_period: agent steps between gradient updates.
      target_update_period: agent steps between target-network syncs.
      epsilon_start, epsilon_end, epsilon_decay_steps: linear ε schedule,
        held at epsilon_start during the warm-up then decayed (Dopamine's
        `linearly_decaying_epsilon`); ε = 0 throughout for noisy agents unless
        `epsilon_with_noise`.
      epsilon_eval: ε of the evaluation policy (0.001 in every reference
        config, noisy or not).
      replay_capacity, batch_size: replay size and minibatch.
      prioritized: prioritized replay (Dopamine flavour).
      priority_exponent: α in priority = (loss + 1e-10)^α (0.5: sqrt).
      importance_exponent: β of the importance weights (fixed).
      reward_clip: learning rewards are clipped to [−c, c]; None keeps them.
      max_gradient_norm: optional clipping of the gradients' global norm (the
        default optimizer's `global_clipnorm`; with an optimizer of your own,
        clip there and leave this None).
    """

    kind: str = "rainbow"
    gamma: float = 0.99
    n_step: int = 3
    learning_rate: float = 6.25e-5
    adam_epsilon: float = 1.5e-4
    loss: str = "mse"
    num_atoms: int = 51
    v_min: float = -10.0
    v_max: float = 10.0
    double_q: bool = True
    dueling: bool = True
    noisy: bool = True
    noisy_sigma0: float = 0.1
    per_sample_noise: bool = True
    expert_noise_in_eval: bool = True
    epsilon_with_noise: bool = False
    min_replay_history: int = 20_000
    update_period: int = 4
    target_update_period: int = 8_000
    epsilon_start: float = 1.0
    epsilon_end: float = 0.01
    epsilon_decay_steps: int = 250_000
    epsilon_eval: float = 0.001
    replay_capacity: int = 1_000_000
    batch_size: int = 32
    prioritized: bool = True
    priority_exponent: float = 0.5
    importance_exponent: float = 0.5
    reward_clip: Optional[float] = 1.0
    max_gradient_norm: Optional[float] = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is not valid; choose one of {list(KINDS)}.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} is not valid; choose one of {list(LOSSES)}.")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}.")
        for name in ("n_step", "update_period", "target_update_period", "batch_size",
                     "replay_capacity", "epsilon_decay_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        if self.min_replay_history < self.batch_size:
            raise ValueError(
                f"min_replay_history={self.min_replay_history} must be >= "
                f"batch_size={self.batch_size}.")
        if self.target_update_period % self.update_period:
            raise ValueError(
                f"target_update_period={self.target_update_period} must be a multiple "
                f"of update_period={self.update_period} (targets sync between updates).")
        for name in ("epsilon_start", "epsilon_end", "epsilon_eval"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}.")
        if self.learning_rate <= 0 or self.adam_epsilon <= 0:
            raise ValueError("learning_rate and adam_epsilon must be > 0.")
        if self.kind == "rainbow" and (self.num_atoms < 2 or self.v_max <= self.v_min):
            raise ValueError(
                f"Rainbow needs num_atoms >= 2 and v_max > v_min, got num_atoms="
                f"{self.num_atoms}, v_min={self.v_min}, v_max={self.v_max}.")
        if self.max_gradient_norm is not None and not self.max_gradient_norm > 0:
            raise ValueError(
                f"max_gradient_norm must be > 0 or None, got {self.max_gradient_norm}.")
        if self.reward_clip is not None and self.reward_clip <= 0:
            raise ValueError(f"reward_clip must be > 0 or None, got {self.reward_clip}.")
        if self.priority_exponent < 0 or self.importance_exponent < 0:
            raise ValueError("priority_exponent and importance_exponent must be >= 0.")

    @property
    def train_steps_per_target_update(self):
        """TF-Agents counts target periods in gradient updates."""
        return self.target_update_period // self.update_period

    @property
    def epsilon_greedy_training(self):
        """Whether the collect policy is ε-greedy (False: ε = 0, noisy nets)."""
        return not self.noisy or self.epsilon_with_noise

    def epsilon(self, agent_step):
        """Training ε at a step of the reference's counter (Python float): 0
        for noisy agents (unless `epsilon_with_noise`), else Dopamine's
        linear decay. The t-th action (t = 1, 2, ...) uses `epsilon(t)`."""
        if not self.epsilon_greedy_training:
            return 0.0
        steps_left = self.epsilon_decay_steps + self.min_replay_history - agent_step
        bonus = (self.epsilon_start - self.epsilon_end) * steps_left / self.epsilon_decay_steps
        return self.epsilon_end + min(max(bonus, 0.0), self.epsilon_start - self.epsilon_end)

    @classmethod
    def preset(cls, name, **overrides):
        """The paper's agents: "dqn", "rainbow" (main study) or "der" (Atari 100k)."""
        if name not in PRESETS:
            raise ValueError(f"Unknown agent preset {name!r}; choose one of {list(PRESETS)}.")
        values = dict(_PRESETS[name])
        values.update(overrides)
        return cls(**values)


_PRESETS = {
    "dqn": dict(kind="dqn", n_step=1, loss="mse", double_q=False, dueling=False,
                noisy=False, prioritized=False),
    "rainbow": dict(kind="rainbow"),
    "der": dict(kind="rainbow", n_step=10, learning_rate=1e-4, min_replay_history=1_600,
                update_period=1, target_update_period=2_000,
                epsilon_decay_steps=2_000),
}
