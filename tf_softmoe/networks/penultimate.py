"""The penultimate blocks compared by the paper (SPEC §1, table)."""

import tensorflow as tf

from tf_softmoe import layers
from tf_softmoe.layers import _common
from tf_softmoe.networks import config as config_lib


def hidden_dense(units, noisy, sigma0, name, dtype=None):
    """Dense(units) + ReLU, or its noisy-net version."""
    if noisy:
        return layers.NoisyDense(units, sigma0=sigma0, activation="relu", name=name,
                                 dtype=dtype)
    return tf.keras.layers.Dense(units, activation="relu", name=name, dtype=dtype,
                                 kernel_initializer="glorot_uniform")


def block_arguments(config):
    """The `PenultimateBlock` arguments a `NetworkConfig` (or its dict) asks for.

    PerPatch's conv embedding is 64 wide for Nature and 32 for Impala unless
    `patch_embedding_dim` is set, as the reference's DQN networks.
    """
    if isinstance(config, dict):
        config = config_lib.NetworkConfig.from_dict(config)
    embedding_dim = config.patch_embedding_dim or (64 if config.encoder == "nature" else 32)
    return {
        "kind": config.penultimate, "width": config.penultimate_width,
        "num_experts": config.experts or 4, "capacity_factor": config.capacity_factor,
        "num_slots": config.num_slots, "normalize": config.normalize,
        "top_k": config.top_k, "noisy": config.noisy, "sigma0": config.noisy_sigma0,
        "expert_noise_in_eval": config.expert_noise_in_eval,
        "tokenizer": config.tokenizer, "patch_size": config.patch_size,
        "patch_embedding": config.patch_embedding, "patch_embedding_dim": embedding_dim,
        "shuffle_seed": config.shuffle_seed, "shuffle_scope": config.shuffle_scope,
    }


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class PenultimateBlock(tf.keras.layers.Layer):
    """Feature map `[B, h, w, C]` → features `[B, F]` for the Q head.

    | kind            | computation                                              |
    |-----------------|----------------------------------------------------------|
    | flatten         | flatten → Dense(width) → ReLU                            |
    | softmoe         | tokenize → SoftMoE(n, expert hidden width) → flatten     |
    | topk_moe        | tokenize → TopKMoE(n, k=top_k) → flatten                 |
    | expert_choice   | tokenize → ExpertChoice(n) → flatten                     |
    | tokenized_sum   | tokenize → per-token Dense(width) → ReLU → sum tokens    |
    | tokenized_avg   | tokenize → per-token Dense(width) → ReLU → mean tokens   |
    | gap             | global average pool → Dense(width) → ReLU                |

    The paper's width is 512·k (`NetworkConfig.penultimate_width`);
    `block_arguments(network_config)` gives the arguments a `NetworkConfig`
    asks for.

    `call(..., return_diagnostics=True)` also returns a dict with `hidden`
    (the penultimate hidden units, last axis = units, for dormant-neuron
    counts) and, for MoE blocks, the layer's routing statistics (`gate`,
    `tokens_per_expert`, ...).

    Args:
      kind: the block, one of the table's kinds.
      width: hidden units of the dense layer, or of each expert (512).
      num_experts: experts n of the MoE kinds (4); unused by the others.
      capacity_factor: SoftMoE slots p = ceil(m·c/n), or the TopK/ExpertChoice
        expert capacity factor (1.0).
      num_slots: SoftMoE slots per expert, overriding capacity_factor (None).
      normalize: SoftMoE l2 normalisation with a learned scale (False).
      top_k: experts per token of `topk_moe` (1).
      noisy: factorised-noise hidden layer, or noisy experts' first layer (False).
      sigma0: σ0 of the noisy layers (0.1, the reference's).
      expert_noise_in_eval: with `noisy`, the experts draw noise also when
        called with `training=False`, as the reference's experts, which never
        receive its `eval_mode` (True).
      tokenizer: tokenizer of the tokenized kinds ("per_conv"); one of
        `tf_softmoe.layers.TOKENIZERS`.
      patch_size: PerPatch patch side p (3).
      patch_embedding: PerPatch embedding, "conv" or "avg_pool" ("conv").
      patch_embedding_dim: PerPatch conv embedding width (64: the reference's
        Nature DQN and Rainbow networks; its Impala DQN network uses 32, which
        `block_arguments` picks for an Impala encoder).
      shuffle_seed: seed of the Shuffled tokenizer's permutation (0).
      shuffle_scope: what the Shuffled tokenizer permutes ("all_values").
      **kwargs: `tf.keras.layers.Layer` arguments (name, dtype, ...).

    Raises:
      ValueError: an unknown `kind`; the message lists the valid ones.
    """

    def __init__(self, kind="softmoe", width=512, num_experts=4, capacity_factor=1.0,
                 num_slots=None, normalize=False, top_k=1, noisy=False, sigma0=0.1,
                 expert_noise_in_eval=True, tokenizer="per_conv", patch_size=3,
                 patch_embedding="conv", patch_embedding_dim=64, shuffle_seed=0,
                 shuffle_scope="all_values", **kwargs):
        super().__init__(**kwargs)
        if kind not in config_lib.PENULTIMATES:
            raise ValueError(f"Unknown penultimate block kind {kind!r}; valid kinds are "
                             f"{list(config_lib.PENULTIMATES)}.")
        self.kind = kind
        self.width = int(width)
        self.num_experts = int(num_experts)
        self.capacity_factor = float(capacity_factor)
        self.num_slots = num_slots
        self.normalize = bool(normalize)
        self.top_k = int(top_k)
        self.noisy = bool(noisy)
        self.sigma0 = float(sigma0)
        self.expert_noise_in_eval = bool(expert_noise_in_eval)
        self.tokenizer_kind = tokenizer
        self.patch_size = int(patch_size)
        self.patch_embedding = patch_embedding
        self.patch_embedding_dim = int(patch_embedding_dim)
        self.shuffle_seed = int(shuffle_seed)
        self.shuffle_scope = shuffle_scope
        policy = self.dtype_policy
        self.tokenizer = (self._make_tokenizer(policy)
                          if kind in config_lib.TOKENIZED_PENULTIMATES else None)
        self.moe = None
        self.dense = None
        if kind == "softmoe":
            self.moe = layers.SoftMoE(
                self.num_experts, expert_hidden_units=self.width,
                capacity_factor=self.capacity_factor, num_slots=num_slots,
                normalize=self.normalize, noisy_experts=self.noisy,
                noise_sigma0=self.sigma0, name="soft_moe", dtype=policy)
        elif kind == "topk_moe":
            self.moe = layers.TopKMoE(
                self.num_experts, expert_hidden_units=self.width, k=self.top_k,
                capacity_factor=self.capacity_factor, noisy_experts=self.noisy,
                noise_sigma0=self.sigma0, name="top_k_moe", dtype=policy)
        elif kind == "expert_choice":
            self.moe = layers.ExpertChoice(
                self.num_experts, expert_hidden_units=self.width,
                capacity_factor=self.capacity_factor, noisy_experts=self.noisy,
                noise_sigma0=self.sigma0, name="expert_choice", dtype=policy)
        else:
            self.dense = hidden_dense(self.width, self.noisy, self.sigma0, "hidden",
                                      dtype=policy)

    def _make_tokenizer(self, dtype):
        kwargs = {}
        if self.tokenizer_kind == "per_patch":
            kwargs = {"patch_size": self.patch_size, "embedding": self.patch_embedding,
                      "embedding_dim": self.patch_embedding_dim}
        elif self.tokenizer_kind == "shuffled":
            kwargs = {"seed": self.shuffle_seed, "scope": self.shuffle_scope}
        return layers.make_tokenizer(self.tokenizer_kind, name="tokenizer", dtype=dtype,
                                     **kwargs)

    def call(self, inputs, training=None, return_diagnostics=False, noise=None):
        """Features `[B, F]` (and diagnostics when asked).

        Args:
          inputs: feature map `[B, h, w, C]`.
          training: noisy layers draw noise when True. The experts' noisy
            layers also draw it when False if `config.expert_noise_in_eval`
            (the reference never turns their noise off).
          return_diagnostics: also return the diagnostics dict.
          noise: a `NetworkNoise` (None: each noisy layer draws its own).
        """
        kind = self.kind
        diagnostics = {}
        noisy = self.noisy
        dense_kwargs = {"training": training}
        if noisy and self.dense is not None:
            dense_kwargs["noise"] = None if noise is None else noise.features
        if kind == "flatten":
            features = self.dense(tf.keras.layers.Flatten()(inputs), **dense_kwargs)
            diagnostics["hidden"] = features
        elif kind == "gap":
            pooled = tf.reduce_mean(inputs, axis=[1, 2])
            features = self.dense(pooled, **dense_kwargs)
            diagnostics["hidden"] = features
        else:
            tokens = self.tokenizer(inputs)
            if self.moe is None:
                hidden = self.dense(tokens, **dense_kwargs)
                diagnostics["hidden"] = hidden
                reduce = tf.reduce_sum if kind == "tokenized_sum" else tf.reduce_mean
                features = reduce(hidden, axis=1)
            else:
                expert_training = (True if noisy and self.expert_noise_in_eval
                                   else training)
                outputs, routing = self.moe(
                    tokens, training=expert_training,
                    noise=None if noise is None else noise.experts,
                    return_routing=True)
                diagnostics.update(routing)
                diagnostics["hidden"] = diagnostics.pop("expert_hidden")
                m, d = outputs.shape[1], outputs.shape[2]
                features = tf.reshape(outputs, [-1, m * d])
        if return_diagnostics:
            return features, diagnostics
        return features

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        if self.kind in ("flatten", "gap", "tokenized_sum", "tokenized_avg"):
            return tf.TensorShape([shape[0], self.width])
        tokens = self.tokenizer.compute_output_shape(shape)
        return tf.TensorShape([shape[0], tokens[1] * tokens[2]])

    def get_config(self):
        base = super().get_config()
        base.update({
            "kind": self.kind, "width": self.width, "num_experts": self.num_experts,
            "capacity_factor": self.capacity_factor, "num_slots": self.num_slots,
            "normalize": self.normalize, "top_k": self.top_k, "noisy": self.noisy,
            "sigma0": self.sigma0, "expert_noise_in_eval": self.expert_noise_in_eval,
            "tokenizer": self.tokenizer_kind, "patch_size": self.patch_size,
            "patch_embedding": self.patch_embedding,
            "patch_embedding_dim": self.patch_embedding_dim,
            "shuffle_seed": self.shuffle_seed, "shuffle_scope": self.shuffle_scope})
        return base

    @classmethod
    def from_config(cls, config):
        """Also reads the config of files saved before the block took explicit
        arguments, which held a whole `NetworkConfig` dict under `config`."""
        config = dict(config)
        legacy = config.pop("config", None)
        if legacy is not None:
            config = {**block_arguments(legacy), **config}
        return cls(**config)
