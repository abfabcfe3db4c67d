r"""Trains a DQN / Rainbow / DER agent with a tokenized penultimate block.

Example (Rainbow, Impala encoder, SoftMoE-4 on PerConv tokens):

    python experiments/train.py --agent=rainbow --game=Pong \
        --encoder=impala --penultimate=softmoe --num_experts=4 \
        --root_dir=runs/pong_softmoe4

Re-running the same command resumes from the newest checkpoint. Paper
conditions are flag files: --flagfile=experiments/configs/<condition>.flags.
TensorBoard: tensorboard --logdir <root_dir>/tensorboard
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tf_softmoe  # noqa: E402,F401  (Keras 2 before TensorFlow)
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from experiments import flag_defs  # noqa: E402
from tf_softmoe.train import checkpoints  # noqa: E402
from tf_softmoe.train import experiment  # noqa: E402

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.root_dir:
        raise app.UsageError("--root_dir is required (where the run is written).")
    try:
        config = flag_defs.experiment_config_from_flags()
    except ValueError as error:
        raise app.UsageError(f"Invalid flags: {error}") from error
    logging.info("Training %s in %s", flag_defs.describe(config), FLAGS.root_dir)
    print(f"Training {flag_defs.describe(config)}\n"
          f"  run directory: {os.path.abspath(FLAGS.root_dir)}\n"
          f"  TensorBoard:   tensorboard --logdir "
          f"{os.path.abspath(os.path.join(FLAGS.root_dir, 'tensorboard'))}", flush=True)
    try:
        run = experiment.Experiment(config, FLAGS.root_dir,
                                    allow_config_change=FLAGS.allow_config_change)
        run.run()
    except (experiment.ConfigMismatchError, checkpoints.CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if run.stopped_by_signal is not None:
        print(f"Stopped by signal {run.stopped_by_signal}; checkpoint written. "
              "Re-run the same command to resume.", flush=True)
        return 128 + run.stopped_by_signal
    print(f"Done. Metrics: {os.path.join(FLAGS.root_dir, experiment.METRICS_FILE)}; "
          f"policy: {os.path.join(FLAGS.root_dir, 'policy')}", flush=True)
    return 0


if __name__ == "__main__":
    app.run(main)
