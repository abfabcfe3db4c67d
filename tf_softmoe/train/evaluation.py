"""Plays a trained agent: K episodes under its run's evaluation protocol,
from a run directory's checkpoint or an exported policy."""

import dataclasses
import math
import os

import cv2
import numpy as np
import tensorflow as tf
from tf_agents.trajectories import time_step as ts

from tf_softmoe.metrics import atari_scores
from tf_softmoe.runs import run_directory
from tf_softmoe.train import experiment
from tf_softmoe.train import learner
from tf_softmoe.train import loop


class SavedPolicyActor:
    """ε-greedy actions from a PolicySaver export (saved with any batch
    size): one call per environment step, or `actions` for a batch."""

    def __init__(self, policy_dir, epsilon, num_actions, seed):
        self._policy = tf.saved_model.load(policy_dir)
        self._epsilon = epsilon
        self._num_actions = num_actions
        self._rng = np.random.default_rng(seed)

    def __call__(self, time_step):
        batched = ts.TimeStep(*(np.asarray(x)[None] for x in time_step))
        return int(self.actions(batched)[0])

    def actions(self, time_steps, max_batch_size=None):
        """Actions for a `TimeStep` of arrays with a leading batch dimension."""
        del max_batch_size  # the saved function takes any batch size
        greedy = self._policy.action(
            ts.TimeStep(*(tf.constant(np.asarray(x)) for x in time_steps)), ()).action.numpy()
        rows = len(greedy)
        explore = self._rng.random(rows) < self._epsilon
        return np.where(explore, self._rng.integers(self._num_actions, size=rows), greedy)


class VideoRecorder:
    """Collects the RGB screens of the first episode of the first
    environment it is called with and writes an MP4."""

    def __init__(self, path, fps=15):
        self.path, self.fps, self.frames, self.done = path, fps, [], False
        self._env = None

    def __call__(self, env, time_step):
        if self._env is None:
            self._env = env
        if self.done or env is not self._env:
            return
        self.frames.append(env.render())
        info = env.get_info() if hasattr(env, "get_info") else None
        if (info["episode_ended"] if info else time_step.is_last()):
            self.done = True

    def write(self):
        if not self.frames:
            return
        height, width = self.frames[0].shape[:2]
        writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                 (width, height))
        for frame in self.frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()


@dataclasses.dataclass
class EvaluationResult:
    """What `evaluate_run` played: the run's config, the policy's source, ε,
    each episode's return and length, the mean and its human-normalised
    score (NaN without episodes or reference scores), the video's frames."""

    config: object
    source: str
    epsilon: float
    returns: list
    lengths: list
    video_frames: int = 0

    @property
    def mean_return(self):
        return float(np.mean(self.returns)) if self.returns else float("nan")

    @property
    def human_normalized(self):
        if not (self.returns and atari_scores.has_human_score(self.config.game)):
            return float("nan")
        return atari_scores.human_normalized_score(self.config.game, self.mean_return)


def check_arguments(num_episodes, epsilon, max_steps, num_envs=None):
    """Raises ValueError naming the flag when an argument is out of range."""
    if isinstance(num_episodes, bool) or not isinstance(num_episodes, int) or num_episodes < 1:
        raise ValueError(f"--num_episodes must be an integer >= 1, got {num_episodes!r}.")
    if epsilon is not None and not (math.isfinite(epsilon) and 0.0 <= epsilon <= 1.0):
        raise ValueError(f"--epsilon must be a number in [0, 1], got {epsilon!r}.")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"--max_steps must be an integer >= 1, got {max_steps!r}.")
    if num_envs is not None and (isinstance(num_envs, bool) or not isinstance(num_envs, int)
                                 or num_envs < 1):
        raise ValueError(f"--num_envs must be an integer >= 1, got {num_envs!r}.")


def evaluate_run(root_dir=None, policy_dir=None, checkpoint=None, num_episodes=10,
                 epsilon=None, max_steps=None, seed=12345, video=None, on_episode=None,
                 num_envs=None):
    """Plays `num_episodes` with a run's agent.

    Args:
      root_dir: a run directory (its newest readable checkpoint, or
        `checkpoint`); or None with `policy_dir`.
      policy_dir: an exported policy directory (its run directory is its
        parent, whose config.json gives the game and protocol).
      checkpoint: a checkpoint directory of `root_dir`.
      num_episodes, max_steps: episodes to play, cap on agent steps in all.
      epsilon: ε of the ε-greedy actions (None: the run's epsilon_eval).
      seed: seed of the evaluation environment (of the first one; the others'
        come from `loop.environment_seeds`).
      video: write the first episode (of the first environment) to this
        .mp4 file.
      on_episode: optional callable `(returns, lengths, steps)` after each
        episode ends (`loop.evaluate`'s), e.g. to print it as it comes.
      num_envs: environments playing the episodes at once (`loop.evaluate`);
        None: the run's `eval_envs` (100 for DER, 1 otherwise). At most
        `num_episodes` are made.

    Raises:
      ValueError: invalid arguments, or a directory that is not a run.
      experiment.ConfigMismatchError: an unreadable config.json.
      checkpoints.CheckpointError: no readable checkpoint.
    """
    if bool(root_dir) == bool(policy_dir):
        raise ValueError("give exactly one of --root_dir or --policy_dir.")
    check_arguments(num_episodes, epsilon, max_steps, num_envs)
    if policy_dir and not os.path.isfile(os.path.join(policy_dir, "saved_model.pb")):
        raise ValueError(f"--policy_dir={policy_dir} is not an exported policy "
                         "(no saved_model.pb); a run writes one in <root_dir>/policy.")
    run = (run_directory.RunDirectory(root_dir) if root_dir
           else run_directory.RunDirectory.of_policy(policy_dir))
    run_dir = run.path
    try:
        config = run.read_config()
    except FileNotFoundError as error:
        raise ValueError(str(error)) from error
    except run_directory.RunDirectoryError as error:
        raise experiment.ConfigMismatchError(str(error)) from error
    epsilon = config.agent.epsilon_eval if epsilon is None else epsilon
    count = min(config.schedule.eval_envs if num_envs is None else num_envs, num_episodes)
    envs = [experiment.make_environment(config, env_seed)
            for env_seed in loop.environment_seeds(seed, count)]
    try:
        if policy_dir:
            actor = SavedPolicyActor(policy_dir, epsilon,
                                     int(envs[0].action_spec().maximum) + 1, seed)
            source = policy_dir
        else:
            _, agent, source = experiment.load_agent(run_dir, checkpoint)
            actor = experiment.eval_policy(agent, epsilon)
        recorder = VideoRecorder(video) if video else None
        # As in training: the acting policy compiled where that is faster.
        jit = learner.resolve_policy_jit_compile(config.schedule.policy_jit_compile,
                                                 config.network)
        returns, lengths = loop.evaluate(envs, actor, num_episodes, max_steps=max_steps,
                                         on_step=recorder, jit_compile=jit,
                                         on_episode=on_episode)
    finally:
        for env in envs:
            env.close()
    frames = 0
    if recorder is not None:
        recorder.write()
        frames = len(recorder.frames)
    return EvaluationResult(config, source, epsilon, list(returns), list(lengths), frames)
