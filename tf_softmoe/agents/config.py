"""Agent hyper-parameters with the Dopamine defaults the papers use (SPEC §4).

`AgentConfig` lives in `tf_softmoe.config` with the rest of a run's
configuration; this module keeps its import path."""

from tf_softmoe.config import KINDS
from tf_softmoe.config import LOSSES
from tf_softmoe.config import PRESETS
from tf_softmoe.config import AgentConfig

__all__ = ["KINDS", "LOSSES", "PRESETS", "AgentConfig"]
