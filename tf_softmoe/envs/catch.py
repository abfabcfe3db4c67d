"""Catch: a tiny image game for fast learning tests, numpy only.

A ball appears in the top row of a `rows` x `columns` grid, in a uniformly
random column, and falls one row per step. The paddle starts in the middle of
the bottom row (column `columns // 2`) and each step moves left (action 0),
stays (1) or moves right (2), clamped to the grid; the paddle moves before the
ball. When the ball reaches the bottom row the episode ends with reward +1 if
the paddle is under it and -1 otherwise (discount 0); every other step gives 0.
An episode is one drop: `rows - 1` steps, so the optimal return is +1.

The same game as bsuite's Catch (Osband et al., "Behaviour Suite for
Reinforcement Learning", ICLR 2020), written here as a TF-Agents py
environment whose observations look like Atari ones: uint8 images
[H, W, stack] with the stack zero-padded at the start of an episode. The grid
is drawn with ball = 255, paddle = 128, background = 0 and upscaled by integer
factors to the requested size (centred, the remainder zero-filled).
"""

import numpy as np
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

__all__ = ["CatchEnv"]

BALL_VALUE = 255
PADDLE_VALUE = 128
LEFT, STAY, RIGHT = 0, 1, 2


def _positive_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"CatchEnv {name} must be an int, got {value!r}.")
    if value < low:
        raise ValueError(f"CatchEnv {name} must be >= {low}, got {value}.")
    return int(value)


class CatchEnv(py_environment.PyEnvironment):
    """Catch as a TF-Agents PyEnvironment with uint8 image observations.

    `get_info()` has the same keys as the Atari env (raw_reward, lives,
    life_lost, episode_raw_return, episode_length, episode_ended, truncated)
    so a training loop can treat both alike; an episode is one drop.
    """

    def __init__(self, rows=10, columns=5, observation_shape=None,
                 stack_size=None, seed=None):
        """Builds the game.

        Args:
          rows: grid height (>= 2); an episode lasts `rows - 1` steps.
          columns: grid width (>= 1), at most `2 * (rows - 1) + 1` so that
            every ball can be caught from the centre.
          observation_shape: None for [rows, columns, stack]; (H, W) or
            (H, W, stack) to upscale the grid by the integer factors
            H // rows and W // columns, e.g. (84, 84, 4).
          stack_size: frames per observation; defaults to the third entry of
            `observation_shape`, else 1. Must agree with it when both given.
          seed: int or None; seeds the ball columns.

        Raises:
          ValueError: an argument is out of range or inconsistent.
        """
        super().__init__(handle_auto_reset=False)
        self._rows = _positive_int("rows", rows, 2)
        self._columns = _positive_int("columns", columns, 1)
        if self._columns > 2 * (self._rows - 1) + 1:
            raise ValueError(
                f"CatchEnv columns={columns} is too wide for rows={rows}: the "
                f"paddle could not reach every ball; use columns <= "
                f"{2 * (self._rows - 1) + 1} or more rows.")
        if observation_shape is None:
            height, width, shape_stack = self._rows, self._columns, None
        else:
            shape = tuple(observation_shape)
            if len(shape) not in (2, 3):
                raise ValueError(
                    "CatchEnv observation_shape must be (H, W) or "
                    f"(H, W, stack), got {observation_shape!r}.")
            height = _positive_int("observation_shape[0]", shape[0],
                                   self._rows)
            width = _positive_int("observation_shape[1]", shape[1],
                                  self._columns)
            shape_stack = (_positive_int("observation_shape[2]", shape[2], 1)
                           if len(shape) == 3 else None)
        if stack_size is None:
            stack = shape_stack or 1
        else:
            stack = _positive_int("stack_size", stack_size, 1)
            if shape_stack is not None and shape_stack != stack:
                raise ValueError(
                    f"CatchEnv stack_size={stack_size} disagrees with "
                    f"observation_shape={observation_shape!r}; give one.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(
                seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"CatchEnv seed must be None or an int >= 0, "
                             f"got {seed!r}.")

        # Pixel (i, j) shows grid cell (row_of[i], column_of[j]); the extra
        # last row and column of the drawing grid stay 0 and fill the margin.
        row_factor = height // self._rows
        column_factor = width // self._columns
        top = (height - row_factor * self._rows) // 2
        left = (width - column_factor * self._columns) // 2
        rows_index = (np.arange(height) - top) // row_factor
        columns_index = (np.arange(width) - left) // column_factor
        rows_index[(rows_index < 0) | (rows_index >= self._rows)] = self._rows
        columns_index[(columns_index < 0)
                      | (columns_index >= self._columns)] = self._columns
        self._pixel_rows = rows_index[:, None]
        self._pixel_columns = columns_index[None, :]
        self._grid = np.zeros((self._rows + 1, self._columns + 1), np.uint8)

        self._observation = np.zeros((height, width, stack), np.uint8)
        self._observation_spec = array_spec.BoundedArraySpec(
            shape=self._observation.shape, dtype=np.uint8, minimum=0,
            maximum=255, name="observation")
        self._action_spec = array_spec.BoundedArraySpec(
            shape=(), dtype=np.int64, minimum=0, maximum=2, name="action")
        self._rng = np.random.default_rng(seed)
        self._ball_row = 0
        self._ball_column = 0
        self._paddle_column = self._columns // 2
        self._episode_ended = True
        self._episode_return = 0.0
        self._episode_length = 0
        self._info = None

    @property
    def rows(self):
        return self._rows

    @property
    def columns(self):
        return self._columns

    @property
    def ball_position(self):
        """(row, column) of the ball."""
        return self._ball_row, self._ball_column

    @property
    def paddle_column(self):
        """Column of the paddle (always in the bottom row)."""
        return self._paddle_column

    def observation_spec(self):
        return self._observation_spec

    def action_spec(self):
        return self._action_spec

    def seed(self, seed):
        """Reseeds the ball columns of later episodes."""
        self._rng = np.random.default_rng(seed)
        return seed

    def get_info(self):
        if self._info is None:
            raise ValueError("get_info() needs a reset() or step() first.")
        return self._info

    def _draw(self):
        grid = self._grid
        grid.fill(0)
        grid[self._rows - 1, self._paddle_column] = PADDLE_VALUE
        grid[self._ball_row, self._ball_column] = BALL_VALUE
        return grid[self._pixel_rows, self._pixel_columns]

    def _set_info(self, reward, ended):
        self._info = {
            "raw_reward": float(reward),
            "lives": 0,
            "life_lost": False,
            "episode_raw_return": self._episode_return,
            "episode_length": self._episode_length,
            "episode_ended": ended,
            "truncated": False,
        }

    def _reset(self):
        self._ball_row = 0
        self._ball_column = int(self._rng.integers(self._columns))
        self._paddle_column = self._columns // 2
        self._episode_ended = False
        self._episode_return = 0.0
        self._episode_length = 0
        observation = np.zeros_like(self._observation)
        observation[..., -1] = self._draw()
        self._observation = observation
        self._set_info(0.0, False)
        return ts.TimeStep(
            step_type=np.asarray(ts.StepType.FIRST, np.int32),
            reward=np.asarray(0.0, np.float32),
            discount=np.asarray(1.0, np.float32),
            observation=observation)

    def _step(self, action):
        if self._episode_ended:
            return self.reset()
        move = int(action)
        if move not in (LEFT, STAY, RIGHT):
            raise ValueError(
                f"CatchEnv action must be 0 (left), 1 (stay) or 2 (right), "
                f"got {action!r}.")
        self._paddle_column = min(max(self._paddle_column + move - 1, 0),
                                  self._columns - 1)
        self._ball_row += 1
        self._episode_length += 1
        if self._ball_row == self._rows - 1:
            reward = 1.0 if self._paddle_column == self._ball_column else -1.0
            step_type, discount = ts.StepType.LAST, 0.0
            self._episode_ended = True
        else:
            reward = 0.0
            step_type, discount = ts.StepType.MID, 1.0
        self._episode_return += reward
        previous = self._observation
        observation = np.empty_like(previous)
        observation[..., :-1] = previous[..., 1:]
        observation[..., -1] = self._draw()
        self._observation = observation
        self._set_info(reward, self._episode_ended)
        return ts.TimeStep(
            step_type=np.asarray(step_type, np.int32),
            reward=np.asarray(reward, np.float32),
            discount=np.asarray(discount, np.float32),
            observation=observation)
