"""The whole description of one run: game, environment protocol, agent,
network and schedule. Stored as `config.json` beside the checkpoints."""

import dataclasses
import json

from tf_softmoe.agents.config import AgentConfig
from tf_softmoe.envs.atari import resolve_game_name
from tf_softmoe.networks.config import NetworkConfig

CATCH_GAME = "catch"
PROTOCOLS = ("dopamine", "der")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Dopamine-style schedule (SPEC §5): iterations of training agent steps.

    Attributes:
      num_iterations: iterations (200 in the paper; 10 for Atari 100k DER).
      steps_per_iteration: training agent steps per iteration (250 000).
      eval_episodes: greedy (ε_eval) episodes after each iteration; 0 = none,
        as in the paper, which reports the training-episode returns.
      eval_max_steps: cap on agent steps of that evaluation phase.
      diagnostics_period: updates between diagnostic summaries (dormant
        neurons, srank, expert usage, ...); they are also taken at the end of
        every iteration.
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
    eval_max_steps: int = 125_000
    diagnostics_period: int = 2_500
    dormant_taus: tuple = (0.0, 0.025)
    keep_checkpoints: int = 2
    jit_compile: str = "auto"
    policy_jit_compile: str = "auto"
    seed: int = 0
    overlap_updates: bool = False

    def __post_init__(self):
        object.__setattr__(self, "dormant_taus", tuple(float(t) for t in self.dormant_taus))
        for name in ("num_iterations", "steps_per_iteration", "keep_checkpoints"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        for name in ("eval_episodes", "eval_max_steps", "diagnostics_period", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}.")
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
      agent, network, schedule: the three configs.
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
                     "schedule.eval_max_steps", "schedule.diagnostics_period",
                     "schedule.keep_checkpoints", "schedule.jit_compile",
                     "schedule.policy_jit_compile", "schedule.dormant_taus")


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


