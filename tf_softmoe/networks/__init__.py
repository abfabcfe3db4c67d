"""Encoders, penultimate blocks, Q heads and the TF-Agents Q-network.

`QNetwork` and `build_q_network` are imported on first use: they need
TF-Agents, which the Keras layers here do not, and `import tf_softmoe`
imports those layers (to register them for loading saved models) without
paying for TF-Agents.
"""

import importlib

from tf_softmoe.networks.config import ENCODERS
from tf_softmoe.networks.config import MOE_PENULTIMATES
from tf_softmoe.networks.config import PENULTIMATES
from tf_softmoe.networks.config import TOKENIZER_KINDS
from tf_softmoe.networks.config import NetworkConfig
from tf_softmoe.networks.encoders import ImpalaEncoder
from tf_softmoe.networks.encoders import NatureEncoder
from tf_softmoe.networks.encoders import make_encoder
from tf_softmoe.networks.heads import QHead
from tf_softmoe.networks.noise import NetworkNoise
from tf_softmoe.networks.penultimate import PenultimateBlock

__all__ = [
    "ENCODERS", "MOE_PENULTIMATES", "PENULTIMATES", "TOKENIZER_KINDS",
    "ImpalaEncoder", "NatureEncoder", "NetworkConfig", "NetworkNoise", "PenultimateBlock", "QHead",
    "QNetwork", "build_q_network", "make_encoder",
]

_LAZY = {"QNetwork": "q_network", "build_q_network": "q_network"}


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
