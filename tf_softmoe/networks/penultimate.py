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


def make_tokenizer_for(config, dtype=None):
    """The tokenizer a `NetworkConfig` asks for (PerPatch embedding 64 for
    Nature and 32 for Impala unless set, as the reference's DQN networks)."""
    kwargs = {}
    if config.tokenizer == "per_patch":
        embedding_dim = config.patch_embedding_dim or (
            64 if config.encoder == "nature" else 32)
        kwargs = {"patch_size": config.patch_size, "embedding": config.patch_embedding,
                  "embedding_dim": embedding_dim}
    elif config.tokenizer == "shuffled":
        kwargs = {"seed": config.shuffle_seed, "scope": config.shuffle_scope}
    return layers.make_tokenizer(config.tokenizer, name="tokenizer", dtype=dtype,
                                 **kwargs)


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class PenultimateBlock(tf.keras.layers.Layer):
    """Feature map `[B, h, w, C]` → features `[B, F]` for the Q head.

    | kind            | computation                                              |
    |-----------------|----------------------------------------------------------|
    | flatten         | flatten → Dense(512·k) → ReLU                            |
    | softmoe         | tokenize → SoftMoE(n, expert hidden 512·k) → flatten     |
    | topk_moe        | tokenize → TopKMoE(n, k=top_k) → flatten                 |
    | expert_choice   | tokenize → ExpertChoice(n) → flatten                     |
    | tokenized_sum   | tokenize → per-token Dense(512·k) → ReLU → sum tokens    |
    | tokenized_avg   | tokenize → per-token Dense(512·k) → ReLU → mean tokens   |
    | gap             | global average pool → Dense(512·k) → ReLU                |

    `call(..., return_diagnostics=True)` also returns a dict with `hidden`
    (the penultimate hidden units, last axis = units, for dormant-neuron
    counts) and, for MoE blocks, the layer's routing statistics (`gate`,
    `tokens_per_expert`, ...).

    Args:
      config: a `NetworkConfig` (or its dict).
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = config_lib.NetworkConfig.from_dict(config)
        self.config = config
        kind, width = config.penultimate, config.penultimate_width
        noisy, sigma0 = config.noisy, config.noisy_sigma0
        policy = self.dtype_policy
        self.tokenizer = (make_tokenizer_for(config, dtype=policy)
                          if config.tokenized else None)
        self.moe = None
        self.dense = None
        if kind == "softmoe":
            self.moe = layers.SoftMoE(
                config.experts, expert_hidden_units=width,
                capacity_factor=config.capacity_factor, num_slots=config.num_slots,
                normalize=config.normalize, noisy_experts=noisy,
                noise_sigma0=sigma0, name="soft_moe", dtype=policy)
        elif kind == "topk_moe":
            self.moe = layers.TopKMoE(
                config.experts, expert_hidden_units=width, k=config.top_k,
                capacity_factor=config.capacity_factor, noisy_experts=noisy,
                noise_sigma0=sigma0, name="top_k_moe", dtype=policy)
        elif kind == "expert_choice":
            self.moe = layers.ExpertChoice(
                config.experts, expert_hidden_units=width,
                capacity_factor=config.capacity_factor, noisy_experts=noisy,
                noise_sigma0=sigma0, name="expert_choice", dtype=policy)
        else:
            self.dense = hidden_dense(width, noisy, sigma0, "hidden", dtype=policy)

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
        kind = self.config.penultimate
        diagnostics = {}
        noisy = self.config.noisy
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
                expert_training = (True if noisy and self.config.expert_noise_in_eval
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
        kind = self.config.penultimate
        if kind in ("flatten", "gap", "tokenized_sum", "tokenized_avg"):
            return tf.TensorShape([shape[0], self.config.penultimate_width])
        tokens = self.tokenizer.compute_output_shape(shape)
        return tf.TensorShape([shape[0], tokens[1] * tokens[2]])

    def get_config(self):
        base = super().get_config()
        base["config"] = self.config.to_dict()
        return base
