"""The whole description of one run, stored as `config.json` beside the
checkpoints. It lives in `tf_softmoe.config`; this module keeps its import
path."""

from tf_softmoe.config import CATCH_GAME
from tf_softmoe.config import EVAL_SCHEDULES
from tf_softmoe.config import PROTOCOL_EVALUATION
from tf_softmoe.config import PROTOCOLS
from tf_softmoe.config import RESUMABLE_CHANGES
from tf_softmoe.config import ExperimentConfig
from tf_softmoe.config import ScheduleConfig
from tf_softmoe.config import config_differences

__all__ = ["CATCH_GAME", "EVAL_SCHEDULES", "PROTOCOL_EVALUATION", "PROTOCOLS",
           "RESUMABLE_CHANGES", "ExperimentConfig", "ScheduleConfig",
           "config_differences"]
