"""Encoders, penultimate blocks, Q heads and the TF-Agents Q-network."""

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
from tf_softmoe.networks.q_network import QNetwork
from tf_softmoe.networks.q_network import build_q_network

__all__ = [
    "ENCODERS", "MOE_PENULTIMATES", "PENULTIMATES", "TOKENIZER_KINDS",
    "ImpalaEncoder", "NatureEncoder", "NetworkConfig", "NetworkNoise", "PenultimateBlock", "QHead",
    "QNetwork", "build_q_network", "make_encoder",
]
