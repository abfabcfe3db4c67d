"""Atari 2600 games (ALE v5 through gymnasium) as TF-Agents py environments.

The preprocessing follows the protocol of Dopamine (Castro et al., 2018) that
the SoftMoE papers use, with the ALE v5 settings of Machado et al. (2018):

* sticky actions: `repeat_action_probability` (0.25) applied by the emulator
  itself, per emulated frame;
* frame skip 4: the agent's action is emulated for 4 frames, the rewards of
  those frames are summed and the observation is the pixel-wise max over the
  last two of them (it removes the flicker of sprites drawn every other frame);
* grayscale (ALE's own luminance conversion), resized to 84x84 with
  `cv2.INTER_AREA`;
* a stack of the last 4 frames along the last axis, zero-padded at the start of
  every learning episode: the first observation is `[0, 0, 0, f0]`;
* a game over after 100 000 emulated frames since the game's reset (no-op
  frames included): ALE's `max_num_frames_per_episode`, which Dopamine's
  `create_atari_environment` sets; Dopamine's preprocessing reports it as the
  end of the game, a terminal (`StepType.LAST`, discount 0.0);
* at most 27 000 agent steps per game, a truncation (`StepType.LAST`,
  discount 1.0); with frame skip 4 the frame cap above comes first;
* optionally (the DER preset), a random number of no-op agent steps at the
  start of every game, as Dopamine's Atari-100k runner plays them;
* the reward of a time step is the raw game score change; clipping to [-1, 1]
  for learning belongs to the agent.

Why gymnasium's own wrappers are not used. `AtariPreprocessing` matches on the
max-pool, frame skip and `INTER_AREA` resize, but (a) its life-loss terminal
expects the caller to `reset()`, which restarts the whole game, whereas
Dopamine (and DER) keep playing the same game after a lost life; (b) it steps
through the gymnasium env frame by frame, which copies a screen every frame.
`FrameStackObservation` pads with the reset frame by default, stacks on the
first axis and concatenates a new array each step. So the env below drives the
`ale_py.ALEInterface` of a gymnasium-made `ALE/<Game>-v5` env directly
(gymnasium still builds, configures and seeds it) and does the preprocessing
itself, fetching only the two screens that are pooled.

Life-loss terminal (`terminal_on_life_loss=True`, the DER preset), exactly:
when the number of lives drops during the frame skip, emulation of that action
stops at that frame and the step is `LAST` with discount 0.0. Its frame is, as
in Dopamine, the max-pool of the two screen buffers as they stand: a stop on
the last frame pools as usual, a stop on the one before pools that frame with
the previous step's last screen, an earlier stop repeats the previous step's
frame (`stop_observation="dopamine"`; the same holds for a game over);
`stop_observation="stop_frame"` shows the screen of the frame where emulation
stopped instead. The next
`step()` (its action ignored, as TF-Agents prescribes after `LAST`) or
`reset()` starts a new learning episode WITHOUT resetting the emulator: no
frame is emulated, the `FIRST` observation is `[0, 0, 0, f]` where `f` is the
frame of that `LAST` step. Only a real game over, the step cap or a `reset()`
that does not follow a life-loss `LAST` resets the game. The step cap and the
raw return in `get_info()` count the full game, as in Dopamine's runner.

References:
  Machado et al., "Revisiting the Arcade Learning Environment", JAIR 2018.
  Castro et al., "Dopamine: A Research Framework for Deep RL", 2018.
"""

import dataclasses
import difflib
import functools
import re

import ale_py
import cv2
import gymnasium
import numpy as np
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

__all__ = [
    "AtariConfig",
    "AtariPyEnvironment",
    "make_atari_env",
    "resolve_game_name",
    "valid_game_names",
]

_ALE_ID_PREFIX = "ALE/"
_ALE_ID_SUFFIX = "-v5"
# Suffixes of older gym ids ("PongNoFrameskip-v4", "BreakoutDeterministic-v4").
_LEGACY_ID_PATTERN = re.compile(
    r"(NoFrameskip|Deterministic)?(-ram)?(-v\d+)?$", re.IGNORECASE)


def _normalise(name):
    """Lower-cases `name` and keeps only letters and digits."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@functools.lru_cache(maxsize=1)
def _games_by_normalised_name():
    """Maps normalised names to the CamelCase names of ALE v5 gymnasium ids.

    Built from the gymnasium registry that `ale_py` fills, so it lists exactly
    the games this ale-py ships and registers (single-player ROMs), both under
    their CamelCase id ("MsPacman") and their ROM id ("ms_pacman").
    """
    gymnasium.register_envs(ale_py)
    games = {}
    for env_id, spec in gymnasium.registry.items():
        if not (env_id.startswith(_ALE_ID_PREFIX)
                and env_id.endswith(_ALE_ID_SUFFIX)):
            continue
        camel = env_id[len(_ALE_ID_PREFIX):-len(_ALE_ID_SUFFIX)]
        if camel.endswith("-ram"):
            continue
        games[_normalise(camel)] = camel
        rom_id = spec.kwargs.get("game")
        if isinstance(rom_id, str):
            games.setdefault(_normalise(rom_id), camel)
    if not games:
        raise RuntimeError(
            "No ALE/<Game>-v5 environments are registered with gymnasium. "
            "Install the Atari extra: pip install 'gymnasium[atari]'.")
    return games


def valid_game_names():
    """The sorted CamelCase names of every game ALE v5 offers here."""
    return sorted(set(_games_by_normalised_name().values()))


def resolve_game_name(name):
    """Resolves a game name in any common spelling to its ALE v5 name.

    Accepts "Pong", "pong", "ALE/Pong-v5", "PongNoFrameskip-v4", "ms_pacman",
    "MsPacman", ...: the name is matched case- and punctuation-insensitively
    against the games registered by ale-py.

    Args:
      name: a game name.

    Returns:
      The CamelCase name used in the gymnasium id `ALE/<name>-v5`, e.g.
      "MsPacman".

    Raises:
      ValueError: `name` is not a string or no such game ships with ale-py;
        the message lists the closest valid names.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(
            f"game must be a non-empty string such as 'Pong', got {name!r}.")
    stripped = name.strip()
    if stripped.startswith(_ALE_ID_PREFIX):
        stripped = stripped[len(_ALE_ID_PREFIX):]
    stripped = _LEGACY_ID_PATTERN.sub("", stripped)
    games = _games_by_normalised_name()
    key = _normalise(stripped)
    if key in games:
        return games[key]
    close = difflib.get_close_matches(key, list(games), n=5, cutoff=0.5)
    suggestions = sorted({games[c] for c in close}, key=lambda g: (
        -difflib.SequenceMatcher(None, key, _normalise(g)).ratio(), g))
    hint = (f"closest valid names: {', '.join(suggestions)}" if suggestions
            else "valid names: " + ", ".join(valid_game_names()))
    raise ValueError(f"Unknown Atari game {name!r}; {hint}.")


# How the frame of a step that stopped early is made; see AtariConfig.
_STOP_OBSERVATIONS = ("dopamine", "stop_frame")


def _check_int(field, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(
            f"AtariConfig.{field} must be an int, got {value!r} "
            f"({type(value).__name__}).")
    if value < low or (high is not None and value > high):
        upper = "" if high is None else f" and <= {high}"
        raise ValueError(
            f"AtariConfig.{field} must be >= {low}{upper}, got {value}.")


def _check_bool(field, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(
            f"AtariConfig.{field} must be True or False, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class AtariConfig:
    """The Atari protocol of one env; the defaults are Dopamine's (SPEC §5).

    Attributes:
      game: game name in any spelling `resolve_game_name` accepts; stored
        resolved (e.g. "ms_pacman" becomes "MsPacman").
      sticky_action_prob: ALE `repeat_action_probability`, in [0, 1): the
        chance, per emulated frame, that the emulator repeats the previous
        action instead of the new one.
      frame_skip: emulated frames per agent step (>= 1); the observation is
        the max over the last two of them.
      screen_size: side of the square grayscale frame (>= 1).
      stack_size: frames per observation, stacked on the last axis (>= 1).
      max_episode_steps: agent steps per game before a truncation (>= 1).
      terminal_on_life_loss: a lost life ends the learning episode (discount
        0) while the game goes on; see the module docstring.
      full_action_space: all 18 actions instead of the game's minimal set.
      noop_max: at each new game, a random number of no-op frames drawn
        uniformly from [1, noop_max] is emulated first; 0 disables it. Not a
        protocol of the reference; see `noop_start_steps` for DER's.
      noop_start_steps: at each new game (in training and in evaluation), a
        number of no-op agent steps drawn uniformly from
        [0, noop_start_steps - 1] is played before the first observation, as
        Dopamine's Atari-100k runner does (`DataEfficientAtariRunner`,
        `max_noops=30`): each is a full frame-skip step of action 0; their
        rewards and steps count neither towards the game's return nor its
        length; a terminal among them (a game over, or a lost life with
        `terminal_on_life_loss`) starts a new game and the remaining no-ops
        go on. 0 disables it (the main study's runner plays none).
      max_episode_frames: ALE's `max_num_frames_per_episode`: the game is
        over (a terminal) after this many emulated frames since its reset;
        Dopamine's `create_atari_environment` sets 100 000. 0 disables it.
      stop_observation: the frame of a step whose emulation stopped early (a
        game over or, with `terminal_on_life_loss`, a lost life): "dopamine"
        pools the two screen buffers as they stand, as Dopamine's
        `AtariPreprocessing` does (see the module docstring); "stop_frame"
        shows the screen of the frame where emulation stopped.
    """

    game: str
    sticky_action_prob: float = 0.25
    frame_skip: int = 4
    screen_size: int = 84
    stack_size: int = 4
    max_episode_steps: int = 27_000
    terminal_on_life_loss: bool = False
    full_action_space: bool = False
    noop_max: int = 0
    noop_start_steps: int = 0
    max_episode_frames: int = 100_000
    stop_observation: str = "dopamine"

    def __post_init__(self):
        object.__setattr__(self, "game", resolve_game_name(self.game))
        prob = self.sticky_action_prob
        if (isinstance(prob, bool)
                or not isinstance(prob, (int, float, np.floating, np.integer))
                or not 0.0 <= float(prob) < 1.0):
            raise ValueError(
                "AtariConfig.sticky_action_prob must be a number in [0, 1), "
                f"got {prob!r}.")
        object.__setattr__(self, "sticky_action_prob", float(prob))
        _check_int("frame_skip", self.frame_skip, 1)
        _check_int("screen_size", self.screen_size, 1)
        _check_int("stack_size", self.stack_size, 1)
        _check_int("max_episode_steps", self.max_episode_steps, 1)
        _check_int("noop_max", self.noop_max, 0)
        _check_int("noop_start_steps", self.noop_start_steps, 0)
        _check_int("max_episode_frames", self.max_episode_frames, 0)
        if self.stop_observation not in _STOP_OBSERVATIONS:
            raise ValueError(
                "AtariConfig.stop_observation must be one of "
                f"{', '.join(map(repr, _STOP_OBSERVATIONS))}, got "
                f"{self.stop_observation!r}.")
        _check_bool("terminal_on_life_loss", self.terminal_on_life_loss)
        _check_bool("full_action_space", self.full_action_space)

    @classmethod
    def preset(cls, name, game, **overrides):
        """A named protocol for `game`, with fields optionally overridden.

        Presets:
          "dopamine": the SPEC §5 defaults (sticky actions 0.25, no life-loss
            terminal) used by the main study.
          "der": Atari 100k as in DER/Dopamine's atari_100k: no sticky
            actions, life loss is a terminal, 0-29 no-op agent steps at the
            start of every game (`noop_start_steps=30`, the runner's
            `max_noops`).

        Args:
          name: "dopamine" or "der".
          game: game name.
          **overrides: AtariConfig fields to replace.

        Returns:
          An AtariConfig.

        Raises:
          ValueError: unknown preset or field, or an invalid value.
        """
        presets = {
            "dopamine": {},
            "der": {"sticky_action_prob": 0.0, "terminal_on_life_loss": True,
                    "noop_start_steps": 30},
        }
        if name not in presets:
            raise ValueError(
                f"Unknown AtariConfig preset {name!r}; valid presets: "
                f"{', '.join(sorted(presets))}.")
        fields = {f.name for f in dataclasses.fields(cls)} - {"game"}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(
                f"Unknown AtariConfig field(s) {unknown}; valid fields: "
                f"{', '.join(sorted(fields))}.")
        kwargs = dict(presets[name])
        kwargs.update(overrides)
        return cls(game=game, **kwargs)


class AtariPyEnvironment(py_environment.PyEnvironment):
    """An ALE v5 game under the Dopamine protocol as a TF-Agents PyEnvironment.

    Observation: uint8 [screen_size, screen_size, stack_size], oldest frame
    first; a returned observation is never modified afterwards, so it may be
    kept (each step writes one new array: the shifted old frames plus the new
    one, with no intermediate copies). Action: int64 scalar in [0, A-1]
    indexing the minimal (or full) action set. Reward: the raw score change,
    float32. Discount: 0.0 at a terminal, 1.0 otherwise (also at the step-cap
    truncation).

    `get_info()` after any step or reset returns a dict:
      raw_reward: float, the unclipped reward of the last step (0 at reset).
      lives: int, lives left.
      life_lost: bool, the last step lost a life.
      episode_raw_return: float, raw score of the current full game so far.
      episode_length: int, agent steps of the current full game so far.
      episode_ended: bool, the last step ended the full game (game over or
        step cap): `episode_raw_return` and `episode_length` are then final
        and are what the paper reports.
      truncated: bool, the game ended because of `max_episode_steps`.
    "Episode" in these keys is one full game. It equals the learning episode
    (`FIRST` .. `LAST`) unless `terminal_on_life_loss`, where a learning
    episode ends at each lost life.
    """

    def __init__(self, config, seed=None):
        """Builds the gymnasium ALE env; the game starts at the first reset.

        Args:
          config: an AtariConfig.
          seed: int or None. Seeds the emulator (sticky actions and the game's
            own randomness, through gymnasium's `reset(seed=...)` at the first
            game) and the no-op count; None draws fresh entropy.

        Raises:
          ValueError: `config` is not an AtariConfig or `seed` is invalid.
        """
        super().__init__(handle_auto_reset=False)
        if not isinstance(config, AtariConfig):
            raise ValueError(
                "config must be an AtariConfig, e.g. AtariConfig(game='Pong') "
                f"or AtariConfig.preset('dopamine', 'Pong'); got {config!r}.")
        self._config = config
        gymnasium.register_envs(ale_py)
        self._gym_env = gymnasium.make(
            f"{_ALE_ID_PREFIX}{config.game}{_ALE_ID_SUFFIX}",
            frameskip=1,
            repeat_action_probability=config.sticky_action_prob,
            full_action_space=config.full_action_space,
            obs_type="grayscale",
            max_num_frames_per_episode=config.max_episode_frames,
            disable_env_checker=True,
        )
        self._ale = self._gym_env.unwrapped.ale
        if config.full_action_space:
            self._action_set = list(self._ale.getLegalActionSet())
        else:
            self._action_set = list(self._ale.getMinimalActionSet())
        self._num_actions = len(self._action_set)

        height, width = self._ale.getScreenDims()
        self._screens = (np.zeros((height, width), np.uint8),
                         np.zeros((height, width), np.uint8))
        size = config.screen_size
        self._resize_shape = (size, size)
        self._frame = np.zeros((size, size), np.uint8)
        self._observation = np.zeros((size, size, config.stack_size), np.uint8)

        self._observation_spec = array_spec.BoundedArraySpec(
            shape=self._observation.shape, dtype=np.uint8, minimum=0,
            maximum=255, name="observation")
        self._action_spec = array_spec.BoundedArraySpec(
            shape=(), dtype=np.int64, minimum=0,
            maximum=self._num_actions - 1, name="action")

        self._pending_seed = None
        self.seed(seed)
        self._needs_game_reset = True
        self._episode_ended = False
        self._lives = 0
        self._game_return = 0.0
        self._game_length = 0
        self._noop_steps = 0
        self._info = None

    @property
    def config(self):
        """The AtariConfig of this env."""
        return self._config

    @property
    def num_actions(self):
        """Number of actions A; actions are 0 .. A-1."""
        return self._num_actions

    @property
    def action_meanings(self):
        """Names of the actions, e.g. ['NOOP', 'FIRE', 'RIGHT', ...]."""
        return [action.name for action in self._action_set]

    @property
    def noop_steps(self):
        """No-op agent steps played at the start of the current game."""
        return self._noop_steps

    @property
    def lives(self):
        """Lives left in the current game."""
        return int(self._ale.lives())

    def observation_spec(self):
        return self._observation_spec

    def action_spec(self):
        return self._action_spec

    def seed(self, seed):
        """Seeds the next game reset (emulator and no-op counts).

        Args:
          seed: int >= 0 or None (fresh entropy).

        Returns:
          `seed`.

        Raises:
          ValueError: `seed` is not None or a non-negative int.
        """
        if seed is not None and (isinstance(seed, bool) or not isinstance(
                seed, (int, np.integer)) or seed < 0):
            raise ValueError(
                f"seed must be None or an int >= 0, got {seed!r}.")
        self._pending_seed = None if seed is None else int(seed)
        self._noop_rng = np.random.default_rng(self._pending_seed)
        self._needs_game_reset = True
        return seed

    def get_info(self):
        if self._info is None:
            raise ValueError("get_info() needs a reset() or step() first.")
        return self._info

    def reset_game(self):
        """Starts a new game (with its no-op start) even in the middle of one
        or right after a life-loss `LAST`, where `reset()` continues the game."""
        self._needs_game_reset = True
        return self.reset()

    def render(self, mode="rgb_array"):
        """The current RGB screen, uint8 [210, 160, 3]."""
        if mode != "rgb_array":
            raise ValueError(
                f"render mode {mode!r} is not supported; use 'rgb_array'.")
        return self._ale.getScreenRGB()

    def close(self):
        self._gym_env.close()

    def _start_game(self):
        """Resets the emulator, plays the no-op starts and fetches frame 0."""
        seed, self._pending_seed = self._pending_seed, None
        self._reset_emulator(seed)
        noop_max = self._config.noop_max
        if noop_max > 0:
            for _ in range(int(self._noop_rng.integers(1, noop_max + 1))):
                self._ale.act(ale_py.Action.NOOP)
                if self._ale.game_over():
                    self._gym_env.reset()
            self._fetch_reset_frame()
        self._noop_steps = 0
        if self._config.noop_start_steps > 0:
            self._noop_steps = int(self._noop_rng.integers(
                0, self._config.noop_start_steps))
            for _ in range(self._noop_steps):
                _, game_over, life_lost = self._emulate(self._action_set[0])
                if game_over or (self._config.terminal_on_life_loss
                                 and life_lost):
                    # Dopamine's runner resets the environment on any
                    # terminal among the no-ops, a lost life included.
                    self._reset_emulator(None)
        self._game_return = 0.0
        self._game_length = 0
        self._needs_game_reset = False

    def _reset_emulator(self, seed):
        self._gym_env.reset(seed=seed)
        self._fetch_reset_frame()

    def _fetch_reset_frame(self):
        # As Dopamine's reset: buffer 0 the screen, buffer 1 zeros.
        self._ale.getScreenGrayscale(self._screens[0])
        self._screens[1].fill(0)
        self._process_frame(self._screens[0])
        self._lives = self._ale.lives()

    def _emulate(self, ale_action):
        """Plays one agent step of `ale_action`; sets `self._frame`.

        Returns:
          (summed reward, game over, life lost).
        """
        ale = self._ale
        screens = self._screens
        frame_skip = self._config.frame_skip
        check_lives = self._config.terminal_on_life_loss
        stop_frame = self._config.stop_observation == "stop_frame"
        reward = 0.0
        game_over = False
        life_lost = False
        for t in range(frame_skip):
            reward += ale.act(ale_action)
            game_over = ale.game_over()
            if check_lives:
                lives = ale.lives()
                life_lost = lives < self._lives
                self._lives = lives
            stop = game_over or life_lost
            if stop and stop_frame:
                ale.getScreenGrayscale(screens[1])
                if t == frame_skip - 1 and frame_skip > 1:
                    np.maximum(screens[0], screens[1], out=screens[0])
                    self._process_frame(screens[0])
                else:
                    self._process_frame(screens[1])
                break
            # The last two frames of the skip go to buffers 0 and 1; a stop
            # before them leaves what the previous step put there. (With no
            # skip the one frame goes to buffer 0, which is shown; Dopamine's
            # `AtariPreprocessing` would show its reset frame throughout.)
            if t >= frame_skip - 2:
                slot = t - (frame_skip - 2) if frame_skip > 1 else 0
                ale.getScreenGrayscale(screens[slot])
            if stop:
                break
        if not (stop and stop_frame):
            if frame_skip > 1:
                # In place, as Dopamine pools: a later early stop pools this.
                np.maximum(screens[0], screens[1], out=screens[0])
            self._process_frame(screens[0])
        if not check_lives:
            lives = ale.lives()
            life_lost = lives < self._lives
            self._lives = lives
        return reward, game_over, life_lost

    def _process_frame(self, screen):
        self._frame = cv2.resize(screen, self._resize_shape,
                                 interpolation=cv2.INTER_AREA)

    def _reset(self):
        if self._needs_game_reset or not self._episode_ended:
            # A reset mid-episode or after game over/truncation starts a new
            # game; only a life-loss LAST keeps the game going.
            self._start_game()
        self._episode_ended = False
        observation = np.zeros_like(self._observation)
        observation[..., -1] = self._frame
        self._observation = observation
        self._info = {
            "raw_reward": 0.0,
            "lives": int(self._lives),
            "life_lost": False,
            "episode_raw_return": self._game_return,
            "episode_length": self._game_length,
            "episode_ended": False,
            "truncated": False,
        }
        return ts.TimeStep(
            step_type=np.asarray(ts.StepType.FIRST, np.int32),
            reward=np.asarray(0.0, np.float32),
            discount=np.asarray(1.0, np.float32),
            observation=observation)

    def _step(self, action):
        if self._episode_ended:
            return self.reset()
        index = int(action)
        if not 0 <= index < self._num_actions:
            raise ValueError(
                f"action must be an int in [0, {self._num_actions - 1}] for "
                f"{self._config.game}, got {action!r}.")
        reward, game_over, life_lost = self._emulate(self._action_set[index])
        check_lives = self._config.terminal_on_life_loss
        self._game_length += 1
        self._game_return += reward
        truncated = (not game_over
                     and self._game_length >= self._config.max_episode_steps)
        if game_over or truncated:
            self._needs_game_reset = True
        terminal = game_over or (check_lives and life_lost)
        if terminal:
            step_type, discount = ts.StepType.LAST, 0.0
        elif truncated:
            step_type, discount = ts.StepType.LAST, 1.0
        else:
            step_type, discount = ts.StepType.MID, 1.0
        self._episode_ended = step_type == ts.StepType.LAST

        previous = self._observation
        observation = np.empty_like(previous)
        observation[..., :-1] = previous[..., 1:]
        observation[..., -1] = self._frame
        self._observation = observation
        self._info = {
            "raw_reward": float(reward),
            "lives": int(self._lives),
            "life_lost": bool(life_lost),
            "episode_raw_return": self._game_return,
            "episode_length": self._game_length,
            "episode_ended": bool(game_over or truncated),
            "truncated": bool(truncated),
        }
        return ts.TimeStep(
            step_type=np.asarray(step_type, np.int32),
            reward=np.asarray(reward, np.float32),
            discount=np.asarray(discount, np.float32),
            observation=observation)


def make_atari_env(config, seed=None):
    """Builds the TF-Agents py env of `config` (see AtariPyEnvironment).

    Args:
      config: an AtariConfig, e.g. `AtariConfig.preset('der', 'Breakout')`.
      seed: int or None; makes resets, no-op starts and sticky actions
        reproducible.

    Returns:
      An AtariPyEnvironment.

    Raises:
      ValueError: `config` is not an AtariConfig or `seed` is invalid.
    """
    return AtariPyEnvironment(config, seed=seed)
