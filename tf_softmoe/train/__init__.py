"""The training loop: compiled learner, collection, checkpoints, summaries."""

from tf_softmoe.train.config import ExperimentConfig
from tf_softmoe.train.config import ScheduleConfig
from tf_softmoe.train.experiment import ConfigMismatchError
from tf_softmoe.train.experiment import Experiment
from tf_softmoe.train.experiment import load_agent
from tf_softmoe.train.learner import Learner
from tf_softmoe.train.learner import resolve_jit_compile
from tf_softmoe.train.learner import resolve_policy_jit_compile
from tf_softmoe.train.loop import Trainer
from tf_softmoe.train.loop import evaluate

__all__ = ["ConfigMismatchError", "Experiment", "ExperimentConfig", "Learner",
           "ScheduleConfig", "Trainer", "evaluate", "load_agent", "resolve_jit_compile",
           "resolve_policy_jit_compile"]
