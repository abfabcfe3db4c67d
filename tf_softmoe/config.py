"""The whole description of one run, resolved once: `ExperimentConfig` and its
parts (`AgentConfig`, `NetworkConfig`, `ScheduleConfig`; the Atari protocol
is `envs.AtariConfig`, named by `protocol` and changed by `env_overrides`).

Every field has one owner. The network owns everything that shapes what is
built: its head, C51 atoms, dueling and noise. The agent owns the learning
rule (loss, support bounds, replay, ε schedule). Presets live at the
experiment level, `ExperimentConfig.preset("rainbow", game="Pong")`, and set
the agent, network, schedule and protocol together. Building checks that the
parts fit (Rainbow needs a C51 head, DQN a Q-value head, ...) and rewrites
nothing: a mismatch is a ValueError naming the fields and the fix.

`config.json` (the run directory's copy) is `ExperimentConfig.to_json()`; it
reads back to an equal object. A config.json written before the network owned
its head (agent fields num_atoms, dueling, noisy, noisy_sigma0 and
expert_noise_in_eval) is mapped once on read, the agent's values winning, as
the network built from it had them.

One name per idea across configs and flags: `noisy_sigma0` (the layers'
`sigma0` / `noise_sigma0` arguments), `top_k` (the TopKMoE layer's `k`) and
`hidden_units` (the base width; a MoE layer's `expert_hidden_units` is
`hidden_units * scale`). The layer arguments keep their names, which saved
models store.
"""

import dataclasses
import json
import math
from typing import Optional, Tuple

from tf_softmoe import _config

# ----------------------------------------------------------------- network
ENCODERS = ("nature", "impala")
NATURE_PADDINGS = ("same", "valid")
PENULTIMATES = ("flatten", "softmoe", "tokenized_sum", "tokenized_avg", "gap",
                "topk_moe", "expert_choice")
MOE_PENULTIMATES = ("softmoe", "topk_moe", "expert_choice")
TOKENIZED_PENULTIMATES = MOE_PENULTIMATES + ("tokenized_sum", "tokenized_avg")
TOKENIZER_KINDS = ("per_conv", "per_feat", "per_patch", "per_sample", "shuffled")
PATCH_EMBEDDINGS = ("conv", "avg_pool")
SHUFFLE_SCOPES = ("all_values", "per_channel", "positions")
HEADS = ("dqn", "c51")
# ------------------------------------------------------------------- agent
KINDS = ("dqn", "rainbow")
PRESETS = ("dqn", "rainbow", "der")
LOSSES = ("mse", "huber")
# ------------------------------------------------------------- experiment
CATCH_GAME = "catch"
PROTOCOLS = ("dopamine", "der")
EVAL_SCHEDULES = ("every_iteration", "final")
JIT_CHOICES = ("auto", "true", "false")
DISTRIBUTIONS = ("none", "mirrored", "tpu")


def _choice(default, choices):
    return dataclasses.field(default=default, metadata={"choices": choices})


@dataclasses.dataclass(frozen=True)
class NetworkConfig(_config.DictConfig):
    """Every setting of `obs → encoder → penultimate block → Q head`.

    Widths follow the paper: the penultimate hidden width is
    `hidden_units · scale` (512·k). For the MoE blocks that is the width of
    each expert, so "SoftMoE-4" is `num_experts=4, scale=1` and "scaled
    SoftMoE-1" is `num_experts=1, scale=4` (one expert of 2048).

    Attributes:
      encoder: "nature" (3 convs) or "impala" (ResNet, 3 stacks).
      nature_padding: "same" (11×11×64, as the reference) or "valid" (7×7×64).
      impala_stack_sizes: channels of each Impala stack.
      impala_blocks: residual blocks per stack.
      impala_width: multiplier of the Impala channels.
      penultimate: the penultimate block.
      hidden_units: base width (512).
      scale: width multiplier k >= 1.
      tokenizer: the tokenizer of the tokenized blocks.
      patch_size: PerPatch patch side p, 1 <= p <= the feature map's side.
      patch_embedding: PerPatch embedding: "conv" or "avg_pool".
      patch_embedding_dim: PerPatch conv embedding width (None: 64 for
        Nature, 32 for Impala, as the reference's DQN networks; its Rainbow
        network uses 64 with both encoders, which the Rainbow PerPatch flag
        files set).
      shuffle_seed: seed of the Shuffled tokenizer's permutation.
      shuffle_scope: what the Shuffled tokenizer permutes.
      num_experts: experts of a MoE block (None: 4); must stay None for the
        blocks without experts.
      capacity_factor: slots p = ceil(m·c/n) (SoftMoE) / expert capacity.
      num_slots: SoftMoE slots per expert, overriding capacity_factor.
      normalize: SoftMoE l2 normalisation with a learned scale.
      top_k: experts per token for `topk_moe`.
      head: "dqn" (Q-values; the DQN agent) or "c51" (logits over atoms; the
        Rainbow agent).
      num_atoms: atoms of the C51 head.
      dueling: value + advantage − mean(advantage) head.
      noisy: noisy nets: the head's layers, the flatten/gap/tokenized hidden
        layer and the experts' first layer become factorised-noise layers;
        a noisy agent's collect policy draws fresh noise, its greedy policy
        uses the means (but see expert_noise_in_eval).
      noisy_sigma0: σ0 of the noisy layers (0.1 in the reference code, 0.5 in
        Fortunato et al.).
      expert_noise_in_eval: with `noisy`, the experts' noisy layers draw
        noise also when the network is called with `training=False` (the
        greedy/evaluation policy), as the reference's experts, which never
        receive its `eval_mode`. False turns their noise off with the rest.
      mixed_precision: run encoder and penultimate block under
        `mixed_bfloat16` (for GPU/TPU); the head and softmaxes stay float32.
    """

    encoder: str = _choice("impala", ENCODERS)
    nature_padding: str = _choice("same", NATURE_PADDINGS)
    impala_stack_sizes: Tuple[int, ...] = (16, 32, 32)
    impala_blocks: int = 2
    impala_width: int = 1
    penultimate: str = _choice("softmoe", PENULTIMATES)
    hidden_units: int = 512
    scale: int = 1
    tokenizer: str = _choice("per_conv", TOKENIZER_KINDS)
    patch_size: int = 3
    patch_embedding: str = _choice("conv", PATCH_EMBEDDINGS)
    patch_embedding_dim: Optional[int] = None
    shuffle_seed: int = 0
    shuffle_scope: str = _choice("all_values", SHUFFLE_SCOPES)
    num_experts: Optional[int] = None
    capacity_factor: float = 1.0
    num_slots: Optional[int] = None
    normalize: bool = False
    top_k: int = 1
    head: str = _choice("dqn", HEADS)
    num_atoms: int = 51
    dueling: bool = False
    noisy: bool = False
    noisy_sigma0: float = 0.1
    expert_noise_in_eval: bool = True
    mixed_precision: bool = False

    def __post_init__(self):
        _config.check_types(self)
        _check_choices(self)
        for name in ("hidden_units", "scale", "impala_blocks", "impala_width",
                     "patch_size", "top_k", "num_atoms"):
            _config.check_range(name, getattr(self, name), 1)
        for name in ("num_experts", "num_slots", "patch_embedding_dim"):
            if getattr(self, name) is not None:
                _config.check_range(name, getattr(self, name), 1)
        _config.check_range("shuffle_seed", self.shuffle_seed, 0)
        if not self.impala_stack_sizes or min(self.impala_stack_sizes) < 1:
            raise ValueError("impala_stack_sizes must be a non-empty list of integers "
                             f">= 1, got {list(self.impala_stack_sizes)}.")
        if self.head == "c51" and self.num_atoms < 2:
            raise ValueError(f"num_atoms must be >= 2 for the c51 head, got {self.num_atoms}.")
        _config.check_range("capacity_factor", self.capacity_factor, 0, low_open=True)
        _config.check_range("noisy_sigma0", self.noisy_sigma0, 0, low_open=True)
        moe = self.penultimate in MOE_PENULTIMATES
        if self.num_experts is not None and not moe:
            raise ValueError(
                f"num_experts={self.num_experts} conflicts with penultimate="
                f"{self.penultimate!r}, which has no experts; drop num_experts or "
                f"use one of {list(MOE_PENULTIMATES)}.")
        if self.penultimate != "softmoe":
            for name, default in (("num_slots", None), ("normalize", False)):
                if getattr(self, name) != default:
                    raise ValueError(
                        f"{name}={getattr(self, name)!r} only applies to "
                        f"penultimate='softmoe', not {self.penultimate!r}.")
        if self.top_k != 1 and self.penultimate != "topk_moe":
            raise ValueError(
                f"top_k={self.top_k} only applies to penultimate='topk_moe', "
                f"not {self.penultimate!r}.")
        if self.penultimate == "topk_moe" and self.top_k > self.experts:
            raise ValueError(
                f"top_k={self.top_k} exceeds num_experts={self.experts}.")

    @property
    def experts(self):
        """Number of experts (4 when a MoE block leaves it unset), else 0."""
        if self.penultimate not in MOE_PENULTIMATES:
            return 0
        return 4 if self.num_experts is None else self.num_experts

    @property
    def penultimate_width(self):
        """Hidden width of the penultimate layer (per expert for MoE)."""
        return self.hidden_units * self.scale

    @property
    def tokenized(self):
        return self.penultimate in TOKENIZED_PENULTIMATES

    def feature_map_side(self, screen_size):
        """Side of the encoder's square feature map for square frames of
        `screen_size` pixels (84 → 11 for Nature "same" and Impala, 7 for
        Nature "valid")."""
        side = screen_size
        if self.encoder == "impala":
            for _ in self.impala_stack_sizes:
                side = math.ceil(side / 2)  # each stack: 3x3 max-pool, stride 2, "same"
            return side
        for kernel, stride in ((8, 4), (4, 2), (3, 1)):
            side = (math.ceil(side / stride) if self.nature_padding == "same"
                    else (side - kernel) // stride + 1)
        return side


@dataclasses.dataclass(frozen=True)
class AgentConfig(_config.DictConfig):
    """Every hyper-parameter of the DQN and Rainbow learning rules.

    The field defaults are Rainbow's (the paper's main agent); the network
    (head, atoms, dueling, noise) is `NetworkConfig`'s, and
    `ExperimentConfig.preset` sets both. Step counts are in agent
    (environment) steps, as Dopamine counts them.

    Attributes:
      kind: "dqn" (TF-Agents DqnAgent, needs the network's "dqn" head) or
        "rainbow" (CategoricalDqnAgent, needs the "c51" head).
      gamma: discount γ.
      n_step: n of the n-step return (computed by the replay buffer).
      learning_rate: Adam's step size.
      adam_epsilon: Adam's ε.
      loss: DQN only: "mse" (δ² = (target − Q)², the reference's `mse_loss`,
        no ½) or "huber" (δ = 1: ½δ² for |δ| <= 1, |δ| − ½ beyond).
      v_min: lower bound of the C51 support (Rainbow).
      v_max: upper bound of the C51 support (Rainbow).
      double_q: select the next action with the online network.
      per_sample_noise: with a noisy network, the training loss's online
        pass gives every sample its own noise draw, as the reference (a key
        per sample); False: one draw for the whole batch (cheaper, see
        benchmarks/noisy_dense_bench.py). The bootstrap passes (target network
        and double-Q online next-state pass) always share one draw for the
        batch, the same for both, as the reference.
      epsilon_with_noise: with a noisy network, still act ε-greedily on the
        linear schedule. False (the reference's `zero_epsilon`): noisy agents
        train with ε = 0 and explore through the noise alone. Without noise
        the schedule always applies.
      min_replay_history: agent steps collected before learning starts.
      update_period: agent steps between gradient updates.
      target_update_period: agent steps between target-network syncs.
      epsilon_start: training ε during the warm-up, where the linear decay
        starts (Dopamine's `linearly_decaying_epsilon`).
      epsilon_end: training ε after the decay.
      epsilon_decay_steps: agent steps of the linear decay, after the warm-up.
      epsilon_eval: ε of the evaluation policy (0.001 in every reference
        config, noisy or not).
      replay_capacity: transitions the replay buffer holds.
      batch_size: transitions per minibatch.
      prioritized: prioritized replay (Dopamine flavour).
      priority_exponent: α in priority = (loss + 1e-10)^α (0.5: sqrt).
      importance_exponent: β of the importance weights (fixed).
      reward_clip: learning rewards are clipped to [−c, c]; None keeps them.
      max_gradient_norm: optional clipping of the gradients' global norm (the
        default optimizer's `global_clipnorm`; with an optimizer of your own,
        clip there and leave this None).
    """

    kind: str = _choice("rainbow", KINDS)
    gamma: float = 0.99
    n_step: int = 3
    learning_rate: float = 6.25e-5
    adam_epsilon: float = 1.5e-4
    loss: str = _choice("mse", LOSSES)
    v_min: float = -10.0
    v_max: float = 10.0
    double_q: bool = True
    per_sample_noise: bool = True
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
        _config.check_types(self)
        _check_choices(self)
        _config.check_range("gamma", self.gamma, 0.0, 1.0)
        for name in ("n_step", "update_period", "target_update_period", "batch_size",
                     "replay_capacity", "epsilon_decay_steps"):
            _config.check_range(name, getattr(self, name), 1)
        _config.check_range("min_replay_history", self.min_replay_history, 0)
        if self.min_replay_history < self.batch_size:
            raise ValueError(
                f"min_replay_history={self.min_replay_history} must be >= "
                f"batch_size={self.batch_size}.")
        if self.replay_capacity < self.min_replay_history:
            raise ValueError(
                f"replay_capacity={self.replay_capacity} must be >= min_replay_history="
                f"{self.min_replay_history} (and batch_size={self.batch_size}): learning "
                "starts by sampling a replay filled with min_replay_history steps.")
        if self.target_update_period % self.update_period:
            raise ValueError(
                f"target_update_period={self.target_update_period} must be a multiple "
                f"of update_period={self.update_period} (targets sync between updates).")
        for name in ("epsilon_start", "epsilon_end", "epsilon_eval"):
            _config.check_range(name, getattr(self, name), 0.0, 1.0)
        for name in ("learning_rate", "adam_epsilon"):
            _config.check_range(name, getattr(self, name), 0.0, low_open=True)
        if self.kind == "rainbow" and self.v_max <= self.v_min:
            raise ValueError(
                f"Rainbow needs v_max > v_min, got v_min={self.v_min}, v_max={self.v_max}.")
        for name in ("max_gradient_norm", "reward_clip"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 or None, got {getattr(self, name)}.")
        for name in ("priority_exponent", "importance_exponent"):
            _config.check_range(name, getattr(self, name), 0.0)

    @property
    def train_steps_per_target_update(self):
        """TF-Agents counts target periods in gradient updates."""
        return self.target_update_period // self.update_period

    def acts_epsilon_greedy(self, noisy):
        """Whether the collect policy is ε-greedy (False: ε = 0) for a network
        that is `noisy` or not."""
        return not noisy or self.epsilon_with_noise

    def epsilon(self, agent_step, noisy):
        """Training ε at a step of the reference's counter (Python float): 0
        for noisy networks (unless `epsilon_with_noise`), else Dopamine's
        linear decay. The t-th action (t = 1, 2, ...) uses `epsilon(t)`."""
        if not self.acts_epsilon_greedy(noisy):
            return 0.0
        steps_left = self.epsilon_decay_steps + self.min_replay_history - agent_step
        bonus = (self.epsilon_start - self.epsilon_end) * steps_left / self.epsilon_decay_steps
        return self.epsilon_end + min(max(bonus, 0.0), self.epsilon_start - self.epsilon_end)

    @classmethod
    def preset(cls, name, **overrides):
        """The learning rule of the paper's agents: "dqn", "rainbow" (main
        study) or "der" (Atari 100k). The whole agent, network included, is
        `ExperimentConfig.preset`."""
        if name not in PRESETS:
            raise ValueError(f"Unknown agent preset {name!r}; choose one of {list(PRESETS)}.")
        misplaced = sorted(set(overrides) & _NETWORK_FIELDS)
        if misplaced:
            raise ValueError(
                f"{misplaced} belong to NetworkConfig (the network owns its head, "
                "atoms, dueling and noise); set them there, or use "
                f"ExperimentConfig.preset({name!r}, ...), which routes every field.")
        values = dict(_AGENT_PRESETS[name])
        values.update(overrides)
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class ScheduleConfig(_config.DictConfig):
    """Dopamine-style schedule (SPEC §5): iterations of training agent steps.

    Attributes:
      num_iterations: iterations (200 in the paper; 10 for Atari 100k DER).
      steps_per_iteration: training agent steps per iteration (250 000; 10 000
        for DER).
      eval_episodes: full games played with the ε_eval-greedy policy at each
        evaluation; 0 = no evaluation (the paper's Rainbow/DQN figures report
        training returns; the DER figures report the mean of 100 evaluation
        games, `PROTOCOL_EVALUATION`).
      eval_schedule: when to evaluate: "every_iteration" (after each
        iteration, as the reference's runners do) or "final" (only after the
        last scheduled iteration: the run's score for a tenth of the cost in
        a 10-iteration DER run).
      eval_max_steps: cap on the agent steps of one evaluation in total, or
        None for no cap (each game is still capped by the environment's
        `max_episode_steps`); games unfinished at the cap are not counted.
      eval_envs: environments the evaluation plays in at once, with one
        batched policy call per agent step for all of them (on two CPU
        cores 100 environments made a whole 100-game evaluation 2.8x as
        fast as one; docs/performance.md, section 6). The games are split
        evenly between the environments before the first step and each
        environment plays its share to the end, so the games counted follow
        the same law as when played one after another (stopping at the first
        `eval_episodes` to finish would favour short games). 100 for the "der" protocol: the
        reference's DataEfficientAtariRunner plays its 100 games in 100
        environments, one game each (`num_eval_envs=100`,
        `eval_one_to_one=True`). 1 plays them one after another.
      diagnostics_period: updates between diagnostic summaries (dormant
        neurons, srank, Q statistics, expert usage, ...), written to
        TensorBoard at the agent step they are taken; they are also taken at
        the end of every iteration. 0 = only at the end of an iteration.
      summary_period: agent steps between the training scalars written to
        TensorBoard within an iteration (loss and TD-error statistics
        averaged over the updates since the previous write, recent agent
        steps/s, and the returns of the episodes finished since); 0 = only
        the per-iteration scalars. 500 is the reference's
        `summary_writing_frequency` (its agents count agent steps): with
        `update_period` 4 a point per 125 updates, for DER a point per 500.
      progress_seconds: seconds between progress lines within an iteration
        (steps done, steps/s, updates, episodes, last return, ETA of the
        iteration and of the run); 0 = none by time.
      progress_steps: agent steps between progress lines within an
        iteration, in addition to `progress_seconds`; 0 = none by steps.
      dormant_taus: τ thresholds of the dormant-neuron fractions, in [0, 1).
      keep_checkpoints: how many checkpoints to keep.
      jit_compile: XLA for the train step: "auto" (XLA on GPU/TPU, on CPU
        chosen per network; see `resolve_jit_compile`), "true" or "false".
      policy_jit_compile: XLA for the acting policies (collect and
        evaluation; one observation per call): "auto" (XLA on GPU/TPU, on a
        CPU for all but the noisy Nature-flatten networks; see
        `resolve_policy_jit_compile`), "true" or "false".
      seed: seeds TensorFlow, the replay sampler and the environment.
      overlap_updates: run each update on a background thread while the
        next agent steps are collected, acting with the network as of the
        previous update (see `Trainer`); off by default, which is
        Dopamine's serial loop.
      distribution: the learner's `tf.distribute` strategy: "none" (one
        device), "mirrored" (the batch split over the visible GPUs, or the
        logical CPU devices without one) or "tpu" (a TPUStrategy; needs a
        TensorFlow with TPU support). See docs/distribution.md.
      tpu_address: the TPU of distribution="tpu": "local" on a TPU VM, a
        TPU name or a grpc://host:port address.
    """

    num_iterations: int = 200
    steps_per_iteration: int = 250_000
    eval_episodes: int = 0
    eval_schedule: str = _choice("every_iteration", EVAL_SCHEDULES)
    eval_max_steps: Optional[int] = 125_000
    eval_envs: int = 1
    diagnostics_period: int = 2_500
    summary_period: int = 500
    progress_seconds: float = 30.0
    progress_steps: int = 0
    dormant_taus: Tuple[float, ...] = (0.0, 0.025)
    keep_checkpoints: int = 2
    jit_compile: str = _choice("auto", JIT_CHOICES)
    policy_jit_compile: str = _choice("auto", JIT_CHOICES)
    seed: int = 0
    overlap_updates: bool = False
    distribution: str = _choice("none", DISTRIBUTIONS)
    tpu_address: str = "local"

    def evaluates_after(self, iteration):
        """Whether an evaluation follows iteration `iteration` (0-based)."""
        if not self.eval_episodes:
            return False
        return (self.eval_schedule == "every_iteration"
                or iteration == self.num_iterations - 1)

    def __post_init__(self):
        _config.check_types(self)
        _check_choices(self)
        for name in ("num_iterations", "steps_per_iteration", "keep_checkpoints",
                     "eval_envs"):
            _config.check_range(name, getattr(self, name), 1)
        if self.eval_max_steps is not None:
            _config.check_range("eval_max_steps", self.eval_max_steps, 1)
        for name in ("eval_episodes", "diagnostics_period", "summary_period",
                     "progress_steps", "seed", "progress_seconds"):
            _config.check_range(name, getattr(self, name), 0)
        for tau in self.dormant_taus:
            _config.check_range("dormant_taus", tau, 0.0, 1.0, high_open=True)
        if self.distribution == "tpu" and not self.tpu_address.strip():
            raise ValueError("distribution='tpu' needs a tpu_address: 'local' on a "
                             "TPU VM, a TPU name or grpc://host:port.")


# The evaluation each protocol's reference runner does (dopamine-rl 4.1.2).
# "der": `DataEfficientAtariRunner` (labs/atari_100k, used by
# labs/moes/atari_100k_train.py) plays `num_eval_episodes=100` full games with
# ε_eval after every iteration, in 100 environments at once, one game each
# (`num_eval_envs=100`, `eval_one_to_one=True`), each capped only by
# `max_steps_per_episode` (27 000 agent steps, the environment's own cap), and
# reports their mean return. "dopamine": the paper reports training returns,
# so no evaluation is played (Dopamine's `Runner` would spend 125 000 agent
# steps per iteration on one that nobody reads).
PROTOCOL_EVALUATION = {
    "dopamine": {"eval_episodes": 0, "eval_schedule": "every_iteration",
                 "eval_max_steps": 125_000, "eval_envs": 1},
    "der": {"eval_episodes": 100, "eval_schedule": "every_iteration",
            "eval_max_steps": None, "eval_envs": 100},
}

_AGENT_PRESETS = {
    "dqn": dict(kind="dqn", n_step=1, loss="mse", double_q=False, prioritized=False),
    "rainbow": dict(kind="rainbow"),
    "der": dict(kind="rainbow", n_step=10, learning_rate=1e-4, min_replay_history=1_600,
                update_period=1, target_update_period=2_000,
                epsilon_decay_steps=2_000),
}
NETWORK_PRESETS = {
    "dqn": dict(head="dqn", dueling=False, noisy=False),
    "rainbow": dict(head="c51", dueling=True, noisy=True),
    "der": dict(head="c51", dueling=True, noisy=True),
}
# Atari 100k: 10 iterations of 10 000 agent steps (100k steps in all).
_SCHEDULE_PRESETS = {"dqn": {}, "rainbow": {},
                     "der": dict(num_iterations=10, steps_per_iteration=10_000)}
_PROTOCOL_PRESETS = {"dqn": "dopamine", "rainbow": "dopamine", "der": "der"}

_NETWORK_FIELDS = frozenset(f.name for f in dataclasses.fields(NetworkConfig))
_AGENT_FIELDS = frozenset(f.name for f in dataclasses.fields(AgentConfig))
_SCHEDULE_FIELDS = frozenset(f.name for f in dataclasses.fields(ScheduleConfig))
# The fields the agent owned before the network did (config.json files
# written then carry them in their agent section).
_LEGACY_AGENT_NETWORK_FIELDS = ("num_atoms", "dueling", "noisy", "noisy_sigma0",
                                "expert_noise_in_eval")


def _check_choices(config):
    for field in dataclasses.fields(config):
        choices = field.metadata.get("choices")
        if choices is not None:
            _config.check_choice(field.name, getattr(config, field.name), choices)


def env_fields():
    """The `envs.AtariConfig` fields an experiment may override (all but game)."""
    from tf_softmoe.envs import atari  # pylint: disable=import-outside-toplevel
    return tuple(f.name for f in dataclasses.fields(atari.AtariConfig) if f.name != "game")


def check_agent_fits_network(agent, network):
    """Raises ValueError when `agent`'s learning rule cannot train `network`."""
    needed = "c51" if agent.kind == "rainbow" else "dqn"
    if network.head != needed:
        raise ValueError(
            f"agent kind {agent.kind!r} needs the network head {needed!r}, got "
            f"head={network.head!r}; set NetworkConfig(head={needed!r}) "
            f"(ExperimentConfig.preset({agent.kind!r}, ...) sets it).")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One run: `game` under an environment `protocol`, an agent, a network.

    Build one with `ExperimentConfig.preset(name, game=..., **fields)`, from a
    flag file with `ExperimentConfig.from_flagfile`, or from a run
    directory's config.json with `from_json`.

    Attributes:
      game: an Atari game name ("Pong", "ms_pacman", "ALE/Pong-v5") or
        "catch" (the built-in test game).
      protocol: "dopamine" (sticky actions 0.25, no life-loss terminal) or
        "der" (no sticky actions, life-loss terminal) — SPEC §5.
      env_overrides: AtariConfig fields to change from the protocol preset
        (e.g. {"noop_max": 30}); for "catch", CatchEnv arguments.
      agent: the learning rule (`AgentConfig`).
      network: the network exactly as it is built (`NetworkConfig`); its
        head must fit the agent (C51 for Rainbow, Q-values for DQN).
      schedule: iterations, evaluation, summaries (`ScheduleConfig`).
    """

    game: str = "Pong"
    protocol: str = _choice("dopamine", PROTOCOLS)
    env_overrides: dict = dataclasses.field(default_factory=dict)
    agent: AgentConfig = dataclasses.field(default_factory=AgentConfig)
    network: NetworkConfig = dataclasses.field(
        default_factory=lambda: NetworkConfig(**NETWORK_PRESETS["rainbow"]))
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)

    def __post_init__(self):
        _check_choices(self)
        for name, cls in (("agent", AgentConfig), ("network", NetworkConfig),
                          ("schedule", ScheduleConfig)):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"{name} must be a {cls.__name__}, got "
                                 f"{type(getattr(self, name)).__name__}.")
        if not isinstance(self.env_overrides, dict):
            raise ValueError(f"env_overrides must be a dict, got {self.env_overrides!r}.")
        check_agent_fits_network(self.agent, self.network)
        if self.game != CATCH_GAME:
            from tf_softmoe.envs import atari  # pylint: disable=import-outside-toplevel
            # Fails early, listing the closest names, for an unknown game; and
            # checks the overrides against the protocol's AtariConfig.
            env = atari.AtariConfig.preset(self.protocol, self.game, **self.env_overrides)
            object.__setattr__(self, "game", env.game)
            self._check_network_fits_frames(env.screen_size)

    def _check_network_fits_frames(self, screen_size):
        network = self.network
        if network.penultimate in TOKENIZED_PENULTIMATES and network.tokenizer == "per_patch":
            side = network.feature_map_side(screen_size)
            if network.patch_size > side:
                raise ValueError(
                    f"patch_size={network.patch_size} does not fit the {side}x{side} "
                    f"feature map of the {network.encoder} encoder on {screen_size}x"
                    f"{screen_size} frames; choose patch_size in [1, {side}].")

    @classmethod
    def preset(cls, name, game="Pong", **fields):
        """The paper's agent `name` on `game`, with any field overridden.

        Presets: "dqn" and "rainbow" (the main study, "dopamine" protocol,
        200 × 250 000 agent steps) and "der" (Atari 100k: "der" protocol,
        10 × 10 000 agent steps, 100 evaluation games after each iteration).
        A preset sets the agent, its network's head, atoms, dueling and
        noise, the protocol and its evaluation together.

        Args:
          name: "dqn", "rainbow" or "der".
          game: the game.
          **fields: any field of `AgentConfig`, `NetworkConfig`,
            `ScheduleConfig` or `envs.AtariConfig` (into `env_overrides`), by
            its name (each name has one owner), or `protocol`.

        Raises:
          ValueError: an unknown preset or field, or an invalid value.
        """
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {list(PRESETS)}.")
        fields = dict(fields)
        protocol = fields.pop("protocol", None) or _PROTOCOL_PRESETS[name]
        _config.check_choice("protocol", protocol, PROTOCOLS)
        env_overrides = dict(fields.pop("env_overrides", {}))
        parts = {"agent": dict(_AGENT_PRESETS[name]),
                 "network": dict(NETWORK_PRESETS[name]),
                 "schedule": {**_SCHEDULE_PRESETS[name], **PROTOCOL_EVALUATION[protocol]}}
        owners = {"agent": _AGENT_FIELDS, "network": _NETWORK_FIELDS,
                  "schedule": _SCHEDULE_FIELDS}
        environment = set(env_fields())
        unknown = []
        for key, value in fields.items():
            owner = next((part for part, names in owners.items() if key in names), None)
            if owner is not None:
                parts[owner][key] = value
            elif key in environment:
                env_overrides[key] = value
            else:
                unknown.append(key)
        if unknown:
            raise ValueError(
                f"Unknown config fields {sorted(unknown)}; valid: the fields of "
                "AgentConfig, NetworkConfig, ScheduleConfig and AtariConfig, and "
                "protocol.")
        return cls(game=game, protocol=protocol, env_overrides=env_overrides,
                   agent=AgentConfig(**parts["agent"]),
                   network=NetworkConfig(**parts["network"]),
                   schedule=ScheduleConfig(**parts["schedule"]))

    @classmethod
    def from_flagfile(cls, path, **flags):
        """The config the train binary builds from flag file `path`.

        Args:
          path: a file of `--name=value` lines (`--flagfile`'s format).
          **flags: flags that override the file's, by name, with Python
            values (e.g. game="Breakout", seed=3, agent="der").

        Raises:
          ValueError: a missing or unreadable file, an unknown flag, or an
            invalid value; the message names the file and the flag.
        """
        from tf_softmoe.cli import flags as flags_lib  # pylint: disable=import-outside-toplevel
        return flags_lib.config_from_flagfile(path, **flags)

    def to_dict(self):
        return {
            "game": self.game, "protocol": self.protocol,
            "env_overrides": dict(self.env_overrides),
            "agent": self.agent.to_dict(), "network": self.network.to_dict(),
            "schedule": self.schedule.to_dict(),
        }

    @classmethod
    def from_dict(cls, values):
        """Builds the config from `to_dict`'s form, mapping a config.json of
        the agent-owned network fields once (see the module docstring).

        Raises:
          ValueError: a missing or unknown section or field, or an invalid value.
        """
        if not isinstance(values, dict):
            raise ValueError(f"an ExperimentConfig is a JSON object, got {type(values).__name__}.")
        sections = ("game", "protocol", "agent", "network", "schedule")
        missing = [key for key in sections if key not in values]
        unknown = sorted(set(values) - set(sections) - {"env_overrides"})
        if missing or unknown:
            raise ValueError(
                "not an ExperimentConfig: "
                + (f"missing {missing}" if missing else "")
                + ("; " if missing and unknown else "")
                + (f"unknown keys {unknown}" if unknown else "") + ".")
        agent, network = dict(values["agent"]), _tuples(values["network"])
        legacy = {k: agent.pop(k) for k in _LEGACY_AGENT_NETWORK_FIELDS if k in agent}
        if legacy:
            network.update(legacy)
            network["head"] = "c51" if agent.get("kind", "rainbow") == "rainbow" else "dqn"
        return cls(game=values["game"], protocol=values["protocol"],
                   env_overrides=dict(values.get("env_overrides", {})),
                   agent=AgentConfig.from_dict(agent),
                   network=NetworkConfig.from_dict(network),
                   schedule=ScheduleConfig.from_dict(_tuples(values["schedule"])))

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        """Raises ValueError for text that is not JSON or not a config."""
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"not valid JSON ({error}).") from error
        return cls.from_dict(values)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def describe(self):
        """A short human description for the log."""
        net = self.network
        block = net.penultimate
        if block in MOE_PENULTIMATES:
            block += f"-{net.experts} ({net.tokenizer}, expert width {net.penultimate_width})"
        elif block != "flatten":
            block += f" ({net.tokenizer}, width {net.penultimate_width})"
        else:
            block += f" x{net.scale}"
        return (f"{self.agent.kind} on {self.game} ({self.protocol} protocol), "
                f"{net.encoder} encoder, {block}, seed {self.schedule.seed}")


def _tuples(values):
    """JSON turns tuples into lists; dataclass equality needs them back."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in dict(values).items()}


# Fields that may change between a run and its resumption without changing
# what is being trained.
RESUMABLE_CHANGES = ("schedule.num_iterations", "schedule.eval_episodes",
                     "schedule.eval_schedule", "schedule.eval_max_steps",
                     "schedule.eval_envs",
                     "schedule.diagnostics_period", "schedule.keep_checkpoints",
                     "schedule.jit_compile", "schedule.policy_jit_compile",
                     "schedule.dormant_taus", "schedule.summary_period",
                     "schedule.progress_seconds", "schedule.progress_steps",
                     "schedule.distribution", "schedule.tpu_address")


def config_differences(stored, current, ignore=RESUMABLE_CHANGES):
    """Dotted names and (stored, current) values of the fields that differ."""
    def flatten(values, prefix=""):
        out = {}
        for key, value in values.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict) and key != "env_overrides":
                out.update(flatten(value, name + "."))
            else:
                out[name] = value
        return out

    a, b = flatten(_jsonable(stored.to_dict())), flatten(_jsonable(current.to_dict()))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and k not in ignore}


def _jsonable(values):
    return json.loads(json.dumps(values))
