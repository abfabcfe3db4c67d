"""One object holding every knob of the Q-network (SPEC §1)."""

import dataclasses
from typing import Optional, Tuple

from tf_softmoe import _config

ENCODERS = ("nature", "impala")
PENULTIMATES = ("flatten", "softmoe", "tokenized_sum", "tokenized_avg", "gap",
                "topk_moe", "expert_choice")
MOE_PENULTIMATES = ("softmoe", "topk_moe", "expert_choice")
TOKENIZED_PENULTIMATES = MOE_PENULTIMATES + ("tokenized_sum", "tokenized_avg")
TOKENIZER_KINDS = ("per_conv", "per_feat", "per_patch", "per_sample", "shuffled")
HEADS = ("dqn", "c51")


def _choice(field, value, valid):
    if value not in valid:
        raise ValueError(f"{field}={value!r} is not valid; choose one of {list(valid)}.")


@dataclasses.dataclass(frozen=True)
class NetworkConfig(_config.DictConfig):
    """Every setting of `obs → encoder → penultimate block → Q head`.

    Widths follow the paper: the penultimate hidden width is
    `hidden_units · scale` (512·k). For the MoE blocks that is the width of
    each expert, so "SoftMoE-4" is `num_experts=4, scale=1` and "scaled
    SoftMoE-1" is `num_experts=1, scale=4` (one expert of 2048).

    Attributes:
      encoder: "nature" (3 convs) or "impala" (ResNet, 3 stacks).
      nature_padding: "same" (11×11×64, as the reference) or "valid" (7×7×64).
      impala_stack_sizes: channels of each Impala stack.
      impala_blocks: residual blocks per stack.
      impala_width: multiplier of the Impala channels.
      penultimate: one of PENULTIMATES.
      hidden_units: base width (512).
      scale: width multiplier k >= 1.
      tokenizer: one of TOKENIZER_KINDS (tokenized blocks only).
      patch_size, patch_embedding, patch_embedding_dim: PerPatch settings
        (embedding dim None: 64 for Nature, 32 for Impala, as the reference's
        DQN networks; its Rainbow network uses 64 with both encoders, which
        the Rainbow PerPatch flag files set).
      shuffle_seed, shuffle_scope: Shuffled tokenizer settings.
      num_experts: experts of a MoE block (None: 4); must stay None for the
        blocks without experts.
      capacity_factor: slots p = ceil(m·c/n) (SoftMoE) / expert capacity.
      num_slots: SoftMoE slots per expert, overriding capacity_factor.
      normalize: SoftMoE l2 normalisation with a learned scale.
      top_k: experts per token for `topk_moe`.
      head: "dqn" (Q-values) or "c51" (logits over atoms).
      num_atoms: atoms of the C51 head.
      dueling: value + advantage − mean(advantage) head.
      noisy: noisy nets: the head's layers, the flatten/gap/tokenized hidden
        layer and the experts' first layer become factorised-noise layers.
      noisy_sigma0: σ0 (0.1 in the reference code, 0.5 in Fortunato et al.).
      expert_noise_in_eval: with `noisy`, the experts' noisy layers draw
        noise also when the network is called with `training=False` (the
        greedy/evaluation policy), as the reference's experts, which never
        receive its `eval_mode`. False turns their noise off with the rest.
      mixed_precision: run encoder and penultimate block under
        `mixed_bfloat16` (for GPU/TPU); the head and softmaxes stay float32.
    """

    encoder: str = "impala"
    nature_padding: str = "same"
    impala_stack_sizes: Tuple[int, ...] = (16, 32, 32)
    impala_blocks: int = 2
    impala_width: int = 1
    penultimate: str = "softmoe"
    hidden_units: int = 512
    scale: int = 1
    tokenizer: str = "per_conv"
    patch_size: int = 3
    patch_embedding: str = "conv"
    patch_embedding_dim: Optional[int] = None
    shuffle_seed: int = 0
    shuffle_scope: str = "all_values"
    num_experts: Optional[int] = None
    capacity_factor: float = 1.0
    num_slots: Optional[int] = None
    normalize: bool = False
    top_k: int = 1
    head: str = "dqn"
    num_atoms: int = 51
    dueling: bool = False
    noisy: bool = False
    noisy_sigma0: float = 0.1
    expert_noise_in_eval: bool = True
    mixed_precision: bool = False

    def __post_init__(self):
        _choice("encoder", self.encoder, ENCODERS)
        _choice("nature_padding", self.nature_padding, ("same", "valid"))
        _choice("penultimate", self.penultimate, PENULTIMATES)
        _choice("tokenizer", self.tokenizer, TOKENIZER_KINDS)
        _choice("patch_embedding", self.patch_embedding, ("conv", "avg_pool"))
        _choice("head", self.head, HEADS)
        for name in ("hidden_units", "scale", "impala_blocks", "impala_width",
                     "patch_size", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        if self.head == "c51" and self.num_atoms < 2:
            raise ValueError(f"num_atoms must be >= 2 for the c51 head, got {self.num_atoms}.")
        if self.capacity_factor <= 0:
            raise ValueError(f"capacity_factor must be > 0, got {self.capacity_factor}.")
        if self.noisy_sigma0 <= 0:
            raise ValueError(f"noisy_sigma0 must be > 0, got {self.noisy_sigma0}.")
        object.__setattr__(self, "impala_stack_sizes", tuple(self.impala_stack_sizes))
        moe = self.penultimate in MOE_PENULTIMATES
        if self.num_experts is not None and not moe:
            raise ValueError(
                f"num_experts={self.num_experts} conflicts with penultimate="
                f"{self.penultimate!r}, which has no experts; drop num_experts or "
                f"use one of {list(MOE_PENULTIMATES)}.")
        if self.num_experts is not None and self.num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {self.num_experts}.")
        if self.penultimate != "softmoe":
            for name, default in (("num_slots", None), ("normalize", False)):
                if getattr(self, name) != default:
                    raise ValueError(
                        f"{name}={getattr(self, name)!r} only applies to "
                        f"penultimate='softmoe', not {self.penultimate!r}.")
        if self.top_k != 1 and self.penultimate != "topk_moe":
            raise ValueError(
                f"top_k={self.top_k} only applies to penultimate='topk_moe', "
                f"not {self.penultimate!r}.")
        if self.penultimate == "topk_moe" and self.top_k > self.experts:
            raise ValueError(
                f"top_k={self.top_k} exceeds num_experts={self.experts}.")

    @property
    def experts(self):
        """Number of experts (4 when a MoE block leaves it unset), else 0."""
        if self.penultimate not in MOE_PENULTIMATES:
            return 0
        return 4 if self.num_experts is None else self.num_experts

    @property
    def penultimate_width(self):
        """Hidden width of the penultimate layer (per expert for MoE)."""
        return self.hidden_units * self.scale

    @property
    def tokenized(self):
        return self.penultimate in TOKENIZED_PENULTIMATES
