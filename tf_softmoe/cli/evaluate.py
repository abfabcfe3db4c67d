r"""Evaluates a trained agent: K episodes under the evaluation protocol.

From a run directory (newest readable checkpoint, or --checkpoint):

    tfsm-evaluate --root_dir=runs/pong_softmoe4 --num_episodes=10

From an exported policy (the policy/ directory a run writes on exit):

    tfsm-evaluate --policy_dir=runs/pong_softmoe4/policy --num_episodes=10 \
        --video=pong.mp4

(`python experiments/evaluate.py ...` is the same program.) The episodes are
played in --num_envs environments at once (default: the run's eval_envs, 100
for DER; 100 RoadRunner games took 10 minutes on two CPU cores, 34 one after
another). Prints every episode's raw return as it ends, then the mean raw and
human-normalised scores. Actions
are ε-greedy with ε = the run's epsilon_eval (0.001) unless --epsilon is
given. Exit status: 0 done, 1 invalid flags, 2 a run whose config.json or
checkpoints cannot be read.
"""

import math

import tf_softmoe  # noqa: F401  (Keras 2 before TensorFlow)
from absl import flags

from tf_softmoe.cli import _scripts

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """The evaluate program's flags (idempotent)."""
    if "policy_dir" in flag_values:
        return
    define = dict(flag_values=flag_values)
    flags.DEFINE_string("root_dir", None, "Run directory to load from its checkpoints.",
                        **define)
    flags.DEFINE_string("checkpoint", None, "A checkpoint directory (default: newest).",
                        **define)
    flags.DEFINE_string("policy_dir", None, "An exported policy directory (PolicySaver).",
                        **define)
    flags.DEFINE_integer("num_episodes", 10, "Episodes to play (>= 1).", **define)
    flags.DEFINE_float("epsilon", None,
                       "ε of the ε-greedy actions, in [0, 1] (default: epsilon_eval).",
                       **define)
    flags.DEFINE_integer("max_steps", None, "Cap on agent steps in total (>= 1).", **define)
    flags.DEFINE_integer("seed", 12345, "Seed of the evaluation environment.", **define)
    flags.DEFINE_integer("num_envs", None,
                         "Environments playing the episodes at once, one batched policy "
                         "call per step (>= 1; default: the run's eval_envs, 100 for DER).",
                         **define)
    flags.DEFINE_string("video", None, "Write the first episode to this .mp4 file.",
                        **define)


def main(argv):
    from tf_softmoe.train import checkpoints  # pylint: disable=import-outside-toplevel
    from tf_softmoe.train import evaluation  # pylint: disable=import-outside-toplevel
    from tf_softmoe.train import experiment  # pylint: disable=import-outside-toplevel
    if len(argv) > 1:
        return _scripts.report_error(f"unexpected arguments {argv[1:]}; every setting is a --flag.")
    try:
        result = evaluation.evaluate_run(
            root_dir=FLAGS.root_dir, policy_dir=FLAGS.policy_dir,
            checkpoint=FLAGS.checkpoint, num_episodes=FLAGS.num_episodes,
            epsilon=FLAGS.epsilon, max_steps=FLAGS.max_steps, seed=FLAGS.seed,
            video=FLAGS.video, on_episode=_print_episode, num_envs=FLAGS.num_envs)
    except (experiment.ConfigMismatchError, checkpoints.CheckpointError) as error:
        return _scripts.report_error(str(error), status=2)
    except ValueError as error:
        return _scripts.report_error(str(error))
    if FLAGS.video:
        print(f"video: {FLAGS.video} ({result.video_frames} frames)")
    print(f"{result.config.game}: {len(result.returns)} episodes from {result.source} "
          f"(ε = {result.epsilon})")
    if not result.returns:
        print("No episode finished before --max_steps; raise it to score the agent.")
    elif math.isnan(result.human_normalized):
        print(f"mean raw return {result.mean_return:.2f}; {result.config.game} has no "
              "human reference score, so no human-normalised score")
    else:
        print(f"mean raw return {result.mean_return:.2f}; human-normalised "
              f"{result.human_normalized:.4f}")
    return 0


def _print_episode(returns, lengths, steps):
    del steps
    print(f"  episode {len(returns) - 1}: return {returns[-1]:g}, {lengths[-1]} steps",
          flush=True)


def run():
    """Console-script entry point `tfsm-evaluate`."""
    _scripts.run_absl_program(define_flags, main)


if __name__ == "__main__":
    run()
