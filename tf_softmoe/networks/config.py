"""One object holding every knob of the Q-network (SPEC §1).

`NetworkConfig` lives in `tf_softmoe.config` with the rest of a run's
configuration; this module keeps its import path."""

from tf_softmoe.config import ENCODERS
from tf_softmoe.config import HEADS
from tf_softmoe.config import MOE_PENULTIMATES
from tf_softmoe.config import PENULTIMATES
from tf_softmoe.config import TOKENIZED_PENULTIMATES
from tf_softmoe.config import TOKENIZER_KINDS
from tf_softmoe.config import NetworkConfig

__all__ = ["ENCODERS", "HEADS", "MOE_PENULTIMATES", "PENULTIMATES",
           "TOKENIZED_PENULTIMATES", "TOKENIZER_KINDS", "NetworkConfig"]
