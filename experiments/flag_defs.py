"""The train program's flags in absl's global FLAGS, for code that parses
them there (experiments/sweep.py). They are generated from the config
dataclasses by `tf_softmoe.cli.flags`; new code calls
`tf_softmoe.cli.flags.config_from_flags(flag_values)` or
`ExperimentConfig.from_flagfile`."""

from absl import flags

from tf_softmoe.cli import flags as flags_lib
from tf_softmoe.cli import train

FLAGS = flags.FLAGS
train.define_flags(FLAGS)


def experiment_config_from_flags():
    """The `ExperimentConfig` of the parsed global FLAGS (ValueError names the flag)."""
    return flags_lib.config_from_flags(FLAGS)


def describe(config):
    """A short human description of a config for the log."""
    return config.describe()


__all__ = ["FLAGS", "describe", "experiment_config_from_flags"]
