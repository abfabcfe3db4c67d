r"""Evaluates a trained agent: K episodes under the evaluation protocol.

From a run directory (newest readable checkpoint, or --checkpoint):

    python experiments/evaluate.py --root_dir=runs/pong_softmoe4 --num_episodes=10

From an exported policy (the policy/ directory a run writes on exit):

    python experiments/evaluate.py --policy_dir=runs/pong_softmoe4/policy \
        --num_episodes=10 --video=pong.mp4

Prints every episode's raw return and the mean raw and human-normalised
scores. Actions are ε-greedy with ε = the run's epsilon_eval (0.001) unless
--epsilon is given. --video writes the first episode as an MP4.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tf_softmoe  # noqa: E402,F401  (Keras 2 before TensorFlow)
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tf_agents.trajectories import time_step as ts  # noqa: E402

from tf_softmoe import agents  # noqa: E402
from tf_softmoe.metrics import atari_scores  # noqa: E402
from tf_softmoe.runs import run_directory  # noqa: E402
from tf_softmoe.train import checkpoints  # noqa: E402
from tf_softmoe.train import experiment  # noqa: E402
from tf_softmoe.train import learner  # noqa: E402
from tf_softmoe.train import loop  # noqa: E402

flags.DEFINE_string("root_dir", None, "Run directory to load from its checkpoints.")
flags.DEFINE_string("checkpoint", None, "A checkpoint directory (default: newest).")
flags.DEFINE_string("policy_dir", None, "An exported policy directory (PolicySaver).")
flags.DEFINE_integer("num_episodes", 10, "Episodes to play.")
flags.DEFINE_float("epsilon", None, "ε of the ε-greedy actions (default: epsilon_eval).")
flags.DEFINE_integer("max_steps", None, "Cap on agent steps in total.")
flags.DEFINE_integer("seed", 12345, "Seed of the evaluation environment.")
flags.DEFINE_string("video", None, "Write the first episode to this .mp4 file.")
FLAGS = flags.FLAGS


class SavedPolicyActor:
    """ε-greedy actions from a PolicySaver export."""

    def __init__(self, policy_dir, epsilon, num_actions, seed):
        self._policy = tf.saved_model.load(policy_dir)
        self._epsilon = epsilon
        self._num_actions = num_actions
        self._rng = np.random.default_rng(seed)

    def __call__(self, time_step):
        if self._rng.random() < self._epsilon:
            return int(self._rng.integers(self._num_actions))
        batched = ts.TimeStep(*(tf.constant(np.asarray(x)[None]) for x in time_step))
        return int(self._policy.action(batched, ()).action.numpy()[0])


class VideoRecorder:
    """Collects the RGB screens of the first episode and writes an MP4."""

    def __init__(self, path, fps=15):
        self.path, self.fps, self.frames, self.done = path, fps, [], False

    def __call__(self, env, time_step):
        if self.done:
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


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if bool(FLAGS.root_dir) == bool(FLAGS.policy_dir):
        raise app.UsageError("Give exactly one of --root_dir or --policy_dir.")
    run = (run_directory.RunDirectory(FLAGS.root_dir) if FLAGS.root_dir
           else run_directory.RunDirectory.of_policy(FLAGS.policy_dir))
    try:
        config = run.read_config()
    except (FileNotFoundError, run_directory.RunDirectoryError) as error:
        raise app.UsageError(str(error)) from error
    epsilon = config.agent.epsilon_eval if FLAGS.epsilon is None else FLAGS.epsilon
    env = experiment.make_environment(config, FLAGS.seed)
    if FLAGS.policy_dir:
        actor = SavedPolicyActor(FLAGS.policy_dir, epsilon,
                                 int(env.action_spec().maximum) + 1, FLAGS.seed)
        source = FLAGS.policy_dir
    else:
        try:
            _, agent, source = experiment.load_agent(run.path, FLAGS.checkpoint)
        except checkpoints.CheckpointError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        actor = experiment.eval_policy(agent, epsilon)
    recorder = VideoRecorder(FLAGS.video) if FLAGS.video else None
    # As in training: the acting policy compiled where that is faster, judged
    # on the network the agent builds (its noisy layers come from the agent).
    jit = learner.resolve_policy_jit_compile(
        config.schedule.policy_jit_compile,
        agents.network_config_for(config.agent, config.network))
    returns, lengths = loop.evaluate(env, actor, FLAGS.num_episodes,
                                     max_steps=FLAGS.max_steps, on_step=recorder,
                                     jit_compile=jit)
    if recorder is not None:
        recorder.write()
        print(f"video: {FLAGS.video} ({len(recorder.frames)} frames)")
    print(f"{config.game}: {len(returns)} episodes from {source} (ε = {epsilon})")
    for i, (ret, length) in enumerate(zip(returns, lengths)):
        print(f"  episode {i}: return {ret:g}, {length} steps")
    if not returns:
        print("No episode finished before --max_steps; raise it to score the agent.")
    else:
        mean = float(np.mean(returns))
        if atari_scores.has_human_score(config.game):
            hns = atari_scores.human_normalized_score(config.game, mean)
            print(f"mean raw return {mean:.2f}; human-normalised {hns:.4f}")
        else:
            print(f"mean raw return {mean:.2f}; {config.game} has no human reference "
                  "score, so no human-normalised score")
    return 0


if __name__ == "__main__":
    app.run(main)
