"""Keras (tf.keras, Keras 2) layers of "Don't flatten, tokenize!".

Every layer is registered as serializable under the package name `tf_softmoe`,
so models holding them save to `.keras`/SavedModel and load back without
`custom_objects`.
"""

from tf_softmoe.layers._common import PerExpertGlorotUniform
from tf_softmoe.layers.expert_choice import ExpertChoice
from tf_softmoe.layers.experts import ExpertMLP
from tf_softmoe.layers.noisy_dense import ExplicitNoise
from tf_softmoe.layers.noisy_dense import NoisyDense
from tf_softmoe.layers.noisy_dense import SeededNoise
from tf_softmoe.layers.soft_moe import SoftMoE
from tf_softmoe.layers.tokenizers import TOKENIZERS
from tf_softmoe.layers.tokenizers import PerConvTokenizer
from tf_softmoe.layers.tokenizers import PerFeatTokenizer
from tf_softmoe.layers.tokenizers import PerPatchTokenizer
from tf_softmoe.layers.tokenizers import PerSampleTokenizer
from tf_softmoe.layers.tokenizers import ShuffledTokenizer
from tf_softmoe.layers.tokenizers import TokenAggregation
from tf_softmoe.layers.tokenizers import make_tokenizer
from tf_softmoe.layers.top_k_moe import TopKMoE

__all__ = [
    "ExpertChoice", "ExpertMLP", "ExplicitNoise", "NoisyDense", "PerConvTokenizer",
    "PerExpertGlorotUniform", "PerFeatTokenizer", "PerPatchTokenizer",
    "PerSampleTokenizer", "SeededNoise", "ShuffledTokenizer", "SoftMoE", "TOKENIZERS",
    "TokenAggregation", "TopKMoE", "make_tokenizer",
]
