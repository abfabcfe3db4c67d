"""Tokenizers that turn a conv feature map `[B, h, w, C]` into `[B, m, d]` tokens.

"Don't flatten, tokenize!" (Sokar et al., ICLR 2025, §4) compares ways of cutting
the encoder output into tokens; the reported order is
PerConv > PerPatch > PerFeat > Shuffled. `TokenAggregation` turns tokens back
into one vector per sample (flatten, sum or mean).
"""

import difflib

import numpy as np
import tensorflow as tf

from tf_softmoe.layers import _common


class _Tokenizer(tf.keras.layers.Layer):
    """Base: validates the feature map; subclasses define `token_shape`.

    `token_shape(map_shape) -> (m, d)` gives the token grid of an (h, w, C) map.
    """

    def build(self, input_shape):
        self.map_shape = _common.feature_map_shape(input_shape, self.name)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        m, d = self.token_shape(_common.feature_map_shape(shape, self.name))
        return tf.TensorShape([shape[0], m, d])


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class PerConvTokenizer(_Tokenizer):
    """Each spatial position is a token: `[B,h,w,C] → [B, h·w, C]`.

    Token (i·w + j) is the C-vector at row i, column j. The paper's default:
    11×11×64 (Nature) → 121 tokens of 64; 11×11×32 (Impala) → 121 of 32.
    """

    def token_shape(self, map_shape):
        h, w, c = map_shape
        return h * w, c

    def call(self, inputs):
        h, w, c = self.map_shape
        return tf.reshape(inputs, [-1, h * w, c])


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class PerFeatTokenizer(_Tokenizer):
    """Each channel's map is a token: `[B,h,w,C] → [B, C, h·w]`."""

    def token_shape(self, map_shape):
        h, w, c = map_shape
        return c, h * w

    def call(self, inputs):
        h, w, c = self.map_shape
        return tf.transpose(tf.reshape(inputs, [-1, h * w, c]), [0, 2, 1])


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class PerSampleTokenizer(_Tokenizer):
    """The whole map is one token: `[B,h,w,C] → [B, 1, h·w·C]`."""

    def token_shape(self, map_shape):
        h, w, c = map_shape
        return 1, h * w * c

    def call(self, inputs):
        h, w, c = self.map_shape
        return tf.reshape(inputs, [-1, 1, h * w * c])


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class PerPatchTokenizer(_Tokenizer):
    """Non-overlapping p×p patches become tokens.

    `embedding="conv"`: a linear patch embedding, Conv2D(embedding_dim,
    kernel = stride = p, VALID, no activation) → tokens of `embedding_dim`
    (32 for Impala, 64 for Nature in the reference). `embedding="avg_pool"`:
    average pooling p×p, stride p, VALID → tokens of C. Either way the token
    grid is floor(h/p) × floor(w/p); cells that do not fill a whole patch are
    dropped (as VALID padding does). The conv kernel is LeCun-normal and its
    bias zero, Flax's `nn.Conv` defaults, which the reference's embedding uses.

    Args:
      patch_size: p, 1 <= p <= min(h, w).
      embedding: "conv" or "avg_pool".
      embedding_dim: output channels of the conv embedding.
    """

    EMBEDDINGS = ("conv", "avg_pool")

    def __init__(self, patch_size=3, embedding="conv", embedding_dim=64, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = _common.check_positive_int("patch_size", patch_size)
        if embedding not in self.EMBEDDINGS:
            raise ValueError(
                f"embedding must be one of {self.EMBEDDINGS}, got {embedding!r}.")
        self.embedding = embedding
        self.embedding_dim = _common.check_positive_int("embedding_dim", embedding_dim)
        if embedding == "conv":
            self.patch_embedding = tf.keras.layers.Conv2D(
                self.embedding_dim, self.patch_size, strides=self.patch_size,
                padding="valid", kernel_initializer="lecun_normal",
                name="patch_embedding")
        else:
            self.patch_embedding = tf.keras.layers.AveragePooling2D(
                self.patch_size, strides=self.patch_size, padding="valid",
                name="patch_pool")

    def _check_patch(self, map_shape):
        h, w, _ = map_shape
        if self.patch_size > min(h, w):
            raise ValueError(
                f"patch_size must be in [1, {min(h, w)}] for a {h}x{w} feature map, "
                f"got {self.patch_size}.")

    def build(self, input_shape):
        super().build(input_shape)
        self._check_patch(self.map_shape)
        self.patch_embedding.build(input_shape)

    def token_shape(self, map_shape):
        self._check_patch(map_shape)
        h, w, c = map_shape
        p = self.patch_size
        return (h // p) * (w // p), self.embedding_dim if self.embedding == "conv" else c

    def call(self, inputs):
        patches = self.patch_embedding(inputs)
        m, d = self.token_shape(self.map_shape)
        return tf.reshape(patches, [-1, m, d])

    def get_config(self):
        config = super().get_config()
        config.update({"patch_size": self.patch_size, "embedding": self.embedding,
                       "embedding_dim": self.embedding_dim})
        return config


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class ShuffledTokenizer(PerConvTokenizer):
    """PerConv tokens after a fixed random permutation of the feature map.

    The ablation in which tokens lose their spatial meaning (the worst
    tokenization in the paper). The permutation is drawn once from `seed`, which
    the config keeps, so a saved model keeps the same shuffle. `scope` says what
    is permuted before the map is cut into h·w tokens of C:

    - "all_values" (default): all h·w·C values, so a token mixes positions and
      channels.
    - "per_channel": each channel's h·w positions with its own permutation, so
      a token keeps one value per channel but from unrelated positions.
    - "positions": whole positions (token order only). With a
      permutation-equivariant block followed by a flatten and a dense head
      this is a mere re-indexing of the head's weights, kept as a control.

    Args:
      seed: seed of the permutation.
      scope: one of `SCOPES`.
    """

    SCOPES = ("all_values", "per_channel", "positions")

    def __init__(self, seed=0, scope="all_values", **kwargs):
        super().__init__(**kwargs)
        self.seed = int(seed)
        if scope not in self.SCOPES:
            raise ValueError(f"scope must be one of {self.SCOPES}, got {scope!r}.")
        self.scope = scope

    def build(self, input_shape):
        super().build(input_shape)
        h, w, c = self.map_shape
        rng = np.random.RandomState(self.seed)
        if self.scope == "all_values":
            index = rng.permutation(h * w * c)
        elif self.scope == "per_channel":
            # Flat index of (position, channel) is position * c + channel.
            positions = np.stack([rng.permutation(h * w) for _ in range(c)], axis=1)
            index = (positions * c + np.arange(c)[None, :]).reshape(-1)
        else:
            index = (rng.permutation(h * w)[:, None] * c + np.arange(c)[None, :]).reshape(-1)
        self.permutation = tf.constant(index, dtype=tf.int32)

    def call(self, inputs):
        h, w, c = self.map_shape
        flat = tf.reshape(inputs, [-1, h * w * c])
        return tf.reshape(tf.gather(flat, self.permutation, axis=1), [-1, h * w, c])

    def get_config(self):
        config = super().get_config()
        config.update({"seed": self.seed, "scope": self.scope})
        return config


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class TokenAggregation(tf.keras.layers.Layer):
    """Tokens `[B, m, d]` → one vector per sample.

    `flatten`: [B, m·d] (what the SoftMoE block feeds the Q head);
    `sum`: Σ_i X[:, i] → [B, d]; `mean`: (1/m) Σ_i X[:, i] → [B, d].
    """

    MODES = ("flatten", "sum", "mean")

    def __init__(self, mode="flatten", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}.")
        self.mode = mode

    def build(self, input_shape):
        self.tokens = _common.token_shape(input_shape, self.name)
        super().build(input_shape)

    def call(self, inputs):
        if self.mode == "sum":
            return tf.reduce_sum(inputs, axis=1)
        if self.mode == "mean":
            return tf.reduce_mean(inputs, axis=1)
        m, d = self.tokens
        return tf.reshape(inputs, [-1, m * d])

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        m, d = _common.token_shape(shape, self.name)
        return tf.TensorShape([shape[0], m * d if self.mode == "flatten" else d])

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config


TOKENIZERS = {
    "per_conv": PerConvTokenizer,
    "per_feat": PerFeatTokenizer,
    "per_patch": PerPatchTokenizer,
    "per_sample": PerSampleTokenizer,
    "shuffled": ShuffledTokenizer,
}


def make_tokenizer(kind, **kwargs):
    """Builds a tokenizer by name: one of `TOKENIZERS` (e.g. "per_conv").

    Raises:
      ValueError: unknown kind; the message lists the valid ones.
    """
    key = str(kind).lower().replace("-", "_")
    if key not in TOKENIZERS:
        close = difflib.get_close_matches(key, TOKENIZERS, n=2)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Unknown tokenizer {kind!r}; valid tokenizers are "
            f"{sorted(TOKENIZERS)}.{hint}")
    return TOKENIZERS[key](**kwargs)
