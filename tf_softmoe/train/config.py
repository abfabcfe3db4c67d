"""The whole description of one run: game, environment protocol, agent,
network and schedule. Stored as `config.json` beside the checkpoints."""

import dataclasses
import json
import math
import typing

from tf_softmoe.agents.config import AgentConfig
from tf_softmoe.agents.factory import network_config_for
from tf_softmoe.envs.atari import resolve_game_name
from tf_softmoe.networks.config import NetworkConfig

CATCH_GAME = "catch"
PROTOCOLS = ("dopamine", "der")
EVAL_SCHEDULES = ("every_iteration", "final")

# The evaluation each protocol's reference runner does (dopamine-rl 4.1.2).
# "der": `DataEfficientAtariRunner` (labs/atari_100k, used by
# labs/moes/atari_100k_train.py) plays `num_eval_episodes=100` full games with
# ε_eval after every iteration, one game per environment, each capped only by
# `max_steps_per_episode` (27 000 agent steps, the environment's own cap), and
# reports their mean return. "dopamine": the paper reports training returns,
# so no evaluation is played (Dopamine's `Runner` would spend 125 000 agent
# steps per iteration on one that nobody reads).
PROTOCOL_EVALUATION = {
    "dopamine": {"eval_episodes": 0, "eval_schedule": "every_iteration",
                 "eval_max_steps": 125_000},
    "der": {"eval_episodes": 100, "eval_schedule": "every_iteration",
            "eval_max_steps": None},
}


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Dopamine-style schedule (SPEC §5): iterations of training agent steps.

    Attributes:
      num_iterations: iterations (200 in the paper; 10 for Atari 100k DER).
      steps_per_iteration: training agent steps per iteration (250 000).
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
      dormant_taus: τ thresholds of the dormant-neuron fractions.
      keep_checkpoints: how many checkpoints to keep.
      jit_compile: "auto" (XLA on GPU/TPU, on CPU chosen per network; see
        `resolve_jit_compile`), "true" or "false".
      policy_jit_compile: XLA for the acting policies (collect and
        evaluation; one observation per call): "auto" (XLA on GPU/TPU, on a
        CPU for all but the noisy Nature-flatten networks; see
        `resolve_policy_jit_compile`), "true" or "false".
      seed: seeds TensorFlow, the replay sampler and the environment.
      overlap_updates: run each update on a background thread while the
        next agent steps are collected, acting with the network as of the
        previous update (see `Trainer`); off by default, which is
        Dopamine's serial loop.
    """

    num_iterations: int = 200
    steps_per_iteration: int = 250_000
    eval_episodes: int = 0
    eval_schedule: str = "every_iteration"
    eval_max_steps: typing.Optional[int] = 125_000
    diagnostics_period: int = 2_500
    summary_period: int = 500
    progress_seconds: float = 30.0
    progress_steps: int = 0
    dormant_taus: tuple = (0.0, 0.025)
    keep_checkpoints: int = 2
    jit_compile: str = "auto"
    policy_jit_compile: str = "auto"
    seed: int = 0
    overlap_updates: bool = False

    def evaluates_after(self, iteration):
        """Whether an evaluation follows iteration `iteration` (0-based)."""
        if not self.eval_episodes:
            return False
        return (self.eval_schedule == "every_iteration"
                or iteration == self.num_iterations - 1)

    def __post_init__(self):
        object.__setattr__(self, "dormant_taus", tuple(float(t) for t in self.dormant_taus))
        for name in ("num_iterations", "steps_per_iteration", "keep_checkpoints"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        if self.eval_schedule not in EVAL_SCHEDULES:
            raise ValueError(
                f"eval_schedule={self.eval_schedule!r} is not valid; choose one of "
                f"{list(EVAL_SCHEDULES)}.")
        if self.eval_max_steps is not None and (
                isinstance(self.eval_max_steps, bool)
                or not isinstance(self.eval_max_steps, int) or self.eval_max_steps < 1):
            raise ValueError(
                "eval_max_steps must be None (no cap) or an integer >= 1, got "
                f"{self.eval_max_steps!r}.")
        for name in ("eval_episodes", "diagnostics_period", "summary_period",
                     "progress_steps", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}.")
        if (isinstance(self.progress_seconds, bool)
                or not isinstance(self.progress_seconds, (int, float))
                or not math.isfinite(self.progress_seconds) or self.progress_seconds < 0):
            raise ValueError(
                "progress_seconds must be a finite number >= 0 (0: no progress lines "
                f"by time), got {self.progress_seconds!r}.")
        object.__setattr__(self, "progress_seconds", float(self.progress_seconds))
        if not isinstance(self.overlap_updates, bool):
            raise ValueError(
                f"overlap_updates must be True or False, got {self.overlap_updates!r}.")
        for name in ("jit_compile", "policy_jit_compile"):
            value = getattr(self, name)
            if str(value).lower() not in ("auto", "true", "false"):
                raise ValueError(
                    f"{name} must be 'auto', 'true' or 'false', got {value!r}.")
        if any(not 0.0 <= t < 1.0 for t in self.dormant_taus):
            raise ValueError(f"dormant_taus must lie in [0, 1), got {self.dormant_taus}.")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One run: `game` under an environment `protocol`, an agent, a network.

    Attributes:
      game: an Atari game name ("Pong", "ms_pacman", "ALE/Pong-v5") or
        "catch" (the built-in test game).
      protocol: "dopamine" (sticky actions 0.25, no life-loss terminal) or
        "der" (no sticky actions, life-loss terminal) — SPEC §5.
      env_overrides: AtariConfig fields to change from the protocol preset
        (e.g. {"noop_max": 30}).
      agent, network, schedule: the three configs. `network` is stored as
        the agent builds it: the head, atoms, dueling and noise fields are
        set from `agent` (`agents.network_config_for`), so a Rainbow run's
        config says c51, dueling and noisy whatever was passed, and a
        config.json written before this rule reads back resolved.
    """

    game: str = "Pong"
    protocol: str = "dopamine"
    env_overrides: dict = dataclasses.field(default_factory=dict)
    agent: AgentConfig = dataclasses.field(default_factory=AgentConfig)
    network: NetworkConfig = dataclasses.field(default_factory=NetworkConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(
                f"protocol={self.protocol!r} is not valid; choose one of {list(PROTOCOLS)}.")
        if self.game != CATCH_GAME:
            # Fails early, listing the closest names, for an unknown game.
            object.__setattr__(self, "game", resolve_game_name(self.game))
        object.__setattr__(self, "network", network_config_for(self.agent, self.network))

    def to_dict(self):
        return {
            "game": self.game, "protocol": self.protocol,
            "env_overrides": dict(self.env_overrides),
            "agent": self.agent.to_dict(), "network": self.network.to_dict(),
            "schedule": dataclasses.asdict(self.schedule),
        }

    @classmethod
    def from_dict(cls, values):
        values = dict(values)
        return cls(game=values["game"], protocol=values["protocol"],
                   env_overrides=dict(values.get("env_overrides", {})),
                   agent=AgentConfig.from_dict(values["agent"]),
                   network=NetworkConfig.from_dict(_tuples(values["network"])),
                   schedule=ScheduleConfig(**_tuples(values["schedule"])))

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _tuples(values):
    """JSON turns tuples into lists; dataclass equality needs them back."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


# Fields that may change between a run and its resumption without changing
# what is being trained.
RESUMABLE_CHANGES = ("schedule.num_iterations", "schedule.eval_episodes",
                     "schedule.eval_schedule", "schedule.eval_max_steps", "schedule.diagnostics_period",
                     "schedule.keep_checkpoints", "schedule.jit_compile",
                     "schedule.policy_jit_compile", "schedule.dormant_taus",
                     "schedule.summary_period", "schedule.progress_seconds",
                     "schedule.progress_steps")


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


