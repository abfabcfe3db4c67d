r"""Trains a DQN / Rainbow / DER agent with a tokenized penultimate block.

Example (Rainbow, Impala encoder, SoftMoE-4 on PerConv tokens):

    tfsm-train --agent=rainbow --game=Pong --encoder=impala \
        --penultimate=softmoe --num_experts=4 --root_dir=runs/pong_softmoe4

(`python experiments/train.py ...` is the same program.) Re-running the same
command resumes from the newest checkpoint. Paper conditions are flag files:
--flagfile=experiments/configs/<condition>.flags. Every config field is a
flag (--helpfull lists them). TensorBoard: tensorboard --logdir
<root_dir>/tensorboard

Exit status: 0 done; 1 invalid flags or an unusable --root_dir (nothing is
written); 2 an existing run that cannot be resumed (another configuration,
an unreadable config.json or checkpoints; the directory is left as it is);
128 + signal when stopped by SIGTERM, SIGINT or SIGUSR2 (Slurm's
preemption warning); a checkpoint is written.
"""

import os

import tf_softmoe  # noqa: F401  (Keras 2 before TensorFlow)
from absl import flags

from tf_softmoe.cli import _scripts
from tf_softmoe.cli import flags as flags_lib

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """The train program's flags: every config field, --root_dir and
    --allow_config_change (idempotent)."""
    if "root_dir" in flag_values:
        return
    flags_lib.define_config_flags(flag_values)
    flags.DEFINE_string("root_dir", None, "Run directory (checkpoints, logs, metrics).",
                        flag_values=flag_values)
    flags.DEFINE_boolean("allow_config_change", False,
                         "Resume a run directory even if its stored config differs.",
                         flag_values=flag_values)


def main(argv):
    from tf_softmoe.train import checkpoints  # pylint: disable=import-outside-toplevel
    from tf_softmoe.train import distribution  # pylint: disable=import-outside-toplevel
    from tf_softmoe.train import experiment  # pylint: disable=import-outside-toplevel
    if len(argv) > 1:
        return _scripts.report_error(f"unexpected arguments {argv[1:]}; every setting is a --flag.")
    if not FLAGS.root_dir:
        return _scripts.report_error("--root_dir is required (where the run is written).")
    try:
        config = flags_lib.config_from_flags(FLAGS)
    except ValueError as error:
        return _scripts.report_error(f"Invalid flags: {error}", prefix="")
    root_dir = FLAGS.root_dir
    try:
        experiment.check_run_directory(root_dir, config,
                                       allow_config_change=FLAGS.allow_config_change)
    except experiment.UnusableRootDirError as error:
        return _scripts.report_error(f"--root_dir={root_dir}: {error}")
    except (experiment.ConfigMismatchError, checkpoints.CheckpointError) as error:
        return _scripts.report_error(str(error), status=2)
    schedule = config.schedule
    try:
        # Resolved here (once per process; Experiment reuses it) so that a
        # strategy that cannot run is bad input: one line, exit 1.
        distribution.check_batch_split(config.agent.batch_size, distribution.resolve_strategy(
            schedule.distribution, tpu_address=schedule.tpu_address))
    except distribution.DistributionError as error:
        return _scripts.report_error(str(error))
    tensorboard = os.path.abspath(os.path.join(root_dir, "tensorboard"))
    print(f"Training {config.describe()}\n"
          f"  run directory: {os.path.abspath(root_dir)}\n"
          f"  TensorBoard:   tensorboard --logdir {tensorboard}", flush=True)
    try:
        run = experiment.Experiment(config, root_dir,
                                    allow_config_change=FLAGS.allow_config_change)
        run.run()
    except (experiment.ConfigMismatchError, checkpoints.CheckpointError) as error:
        return _scripts.report_error(str(error), status=2)
    if run.stopped_by_signal is not None:
        print(f"Stopped by signal {run.stopped_by_signal}; checkpoint written. "
              "Re-run the same command to resume.", flush=True)
        return 128 + run.stopped_by_signal
    print(f"Done. Metrics: {os.path.join(root_dir, experiment.METRICS_FILE)}; "
          f"policy: {os.path.join(root_dir, 'policy')}", flush=True)
    return 0


def run():
    """Console-script entry point `tfsm-train`."""
    _scripts.run_absl_program(define_flags, main)


if __name__ == "__main__":
    run()
