"""Loads parameters trained with the official code into a `QNetwork`.

The paper's agents were trained with dopamine-rl's `dopamine/labs/moes`
(JAX/Flax; this module follows dopamine-rl 4.1.2). Its networks keep their
weights in a Flax parameter tree, a nested dict of arrays:

| reference network (`labs/moes/architectures/networks.py`) | tf_softmoe config |
|---|---|
| `NatureDQNMoE` (`Conv_0..2` at the top)                    | encoder "nature", head "dqn" |
| `ImpalaMoE` (`encoder/_stacks_s/Conv_j`)                   | encoder "impala", head "dqn" |
| `FullRainbowMoENetwork`, encoder_type CNN / IMPALA (`encoder/...`) | head "c51", dueling, noisy |
| moe_type BASELINE (`Dense_0` / `NoisyNetwork_0` hidden layer) | penultimate "flatten" |
| moe_type SOFTMOE (`SoftMoE_0/phi_weights`, `ExpertModel_0`) | penultimate "softmoe" |
| moe_type MOE, num_selected_experts 1 (`MoE_0/router`)       | penultimate "topk_moe", top_k 1 |
| routing_type PER_PIXEL / PER_FEATUREMAP / PER_SAMPLE        | tokenizer per_conv / per_feat / per_sample |
| routing_type PER_PATCH (`embedding` conv, or avg-pool)      | tokenizer per_patch (embedding conv / avg_pool) |

`load_flax_params(q_network, params)` copies such a tree into a built
`QNetwork` whose `NetworkConfig` describes the same network, checks every
shape, and returns a `LoadReport` naming every reference parameter it could
not place and every weight of the `QNetwork` it left unset; with
`strict=True` (the default) either raises `IncompleteLoadError`. The tree is
plain numpy (JAX arrays and Flax `FrozenDict`s work too, as any mapping of
array-likes), so JAX need not be installed. `q_network_from_flax` builds the
network and loads it in one call; `read_dopamine_checkpoint` reads the
pickled bundle that Dopamine's runner writes (`checkpoints/ckpt.N`) without
JAX, Flax or Optax.

The mapping is one-to-one: Flax `Conv`/`Dense` kernels and Keras kernels
share their layout (`[kh, kw, in, out]`, `[in, out]`), Dopamine's
`NoisyNetwork` and `NoisyDense` share their parameter names, the experts'
stacked `[n, ...]` weights are `ExpertMLP`'s, Φ is `[d, n, p]` on both sides.
The reference's SoftMoE always creates its scalar `scalar` even with
normalisation off, where it is unused; it is then reported as ignored.
Loaded weights give the reference's outputs to float32 rounding (about 1e-5
relative; `tests/reference/test_networks.py`).
"""

import collections
import dataclasses
import io
import pickle
import re
from collections.abc import Mapping
from typing import Dict, Tuple

import numpy as np
import tensorflow as tf
from tf_agents.specs import tensor_spec

from tf_softmoe.networks import config as config_lib
from tf_softmoe.networks import q_network as q_network_lib

_NO_COUNTERPART = {
    "gap": "global average pooling",
    "tokenized_sum": "a tokenized sum block",
    "tokenized_avg": "a tokenized mean block",
    "expert_choice": ("an expert-choice block (its moe_type EXPERTCHOICE builds the "
                      "flatten baseline)"),
}


class IncompleteLoadError(ValueError):
    """Some reference parameters found no place, or some weights got no value."""


class ShapeMismatchError(ValueError):
    """A reference parameter and the weight it maps to differ in shape."""


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What `load_flax_params` did.

    Attributes:
      loaded: (reference path, tf_softmoe variable name) of every copied weight.
      unplaced: reference paths that no weight of the network takes.
      unset: (tf_softmoe variable name, reference path it looked for) of every
        weight left at its initial value.
      ignored: (reference path, reason) of reference parameters that the
        reference itself does not use for this network (e.g. the SoftMoE
        `scalar` with normalisation off).
    """

    loaded: Tuple[Tuple[str, str], ...]
    unplaced: Tuple[str, ...]
    unset: Tuple[Tuple[str, str], ...]
    ignored: Tuple[Tuple[str, str], ...]

    @property
    def complete(self):
        """True when every parameter was placed and every weight was set."""
        return not self.unplaced and not self.unset

    def __str__(self):
        lines = [f"{len(self.loaded)} weights loaded"]
        if self.unplaced:
            lines.append("reference parameters not placed: " + ", ".join(self.unplaced))
        if self.unset:
            lines.append("tf_softmoe weights left unset: " + ", ".join(
                f"{name} (looked for {path!r})" for name, path in self.unset))
        if self.ignored:
            lines.append("ignored: " + ", ".join(
                f"{path} ({reason})" for path, reason in self.ignored))
        return "; ".join(lines)


@dataclasses.dataclass(frozen=True)
class _Slot:
    path: str
    variable: tf.Variable
    scalar: bool = False  # reference (1,) → our ()


def flatten_params(params):
    """A Flax parameter tree as `{"a/b/c": np.ndarray}`.

    Accepts nested mappings (dict, Flax `FrozenDict`) and flat mappings whose
    keys already are "/"-joined paths. When the tree holds a `params`
    collection (what `module.init` returns and Dopamine stores as
    `online_params`), the paths are taken inside it; other collections keep
    their name as prefix (and are then reported as not placed).
    """
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params must be a mapping (a Flax parameter tree), got "
            f"{type(params).__name__}.")
    flat = _flatten(params, "")
    if any(path.startswith("params/") for path in flat):
        flat = {path[len("params/"):] if path.startswith("params/") else path: value
                for path, value in flat.items()}
    return flat


def _flatten(tree, prefix):
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path + "/"))
        else:
            flat[path] = np.asarray(value)
    return flat


def _check_supported(config):
    if config.penultimate in _NO_COUNTERPART:
        raise ValueError(
            f"penultimate={config.penultimate!r} has no counterpart in "
            f"dopamine/labs/moes, which has no {_NO_COUNTERPART[config.penultimate]}; "
            "use 'flatten', 'softmoe' or 'topk_moe'.")
    if config.tokenized and config.tokenizer == "shuffled":
        raise ValueError(
            "tokenizer='shuffled' has no counterpart in dopamine/labs/moes; use "
            "'per_conv', 'per_feat', 'per_patch' or 'per_sample'.")
    if config.penultimate == "topk_moe" and config.top_k != 1:
        raise ValueError(
            f"top_k={config.top_k}: the reference's MoE is a top-1 MoE "
            "(num_selected_experts=1); set top_k=1.")
    if config.head == "dqn" and (config.dueling or config.noisy):
        raise ValueError(
            "The reference's DQN networks (NatureDQNMoE, ImpalaMoE) end in one "
            "linear layer; set dueling=False and noisy=False, or use head='c51' "
            "for FullRainbowMoENetwork.")


def _dense(layer, path, noisy):
    names = (("kernel_mu", "kernel_sigma", "bias_mu", "bias_sigma") if noisy
             else ("kernel", "bias"))
    return [_Slot(f"{path}/{name}", getattr(layer, name)) for name in names]


def _conv(layer, path):
    return [_Slot(f"{path}/kernel", layer.kernel), _Slot(f"{path}/bias", layer.bias)]


def _placements(q_network, reference_paths):
    """The slots (reference path → our variable) and the ignored paths."""
    config = q_network.config
    encoder = q_network._encoder  # pylint: disable=protected-access
    block = q_network._penultimate  # pylint: disable=protected-access
    head = q_network._head  # pylint: disable=protected-access
    slots, ignored = [], []
    if config.encoder == "nature":
        # NatureDQNMoE has its convs at the top; FullRainbowMoENetwork keeps
        # its RainbowCNNet under `encoder`.
        prefix = ("encoder/" if any(p.startswith("encoder/") for p in reference_paths)
                  else "")
        for i, conv in enumerate(encoder.convs):
            slots += _conv(conv, f"{prefix}Conv_{i}")
    else:
        for s, (conv, blocks) in enumerate(zip(encoder.stack_convs,
                                               encoder.stack_blocks)):
            stack = f"encoder/_stacks_{s}"
            slots += _conv(conv, f"{stack}/Conv_0")
            for b, residual in enumerate(blocks):
                slots += _conv(residual.conv_0, f"{stack}/Conv_{1 + 2 * b}")
                slots += _conv(residual.conv_1, f"{stack}/Conv_{2 + 2 * b}")
    # Dense-like layers are named in call order: the flatten block's hidden
    # layer first, then the head's advantage and value layers.
    linear = "NoisyNetwork" if config.noisy else "Dense"
    index = 0
    if config.penultimate == "flatten":
        slots += _dense(block.dense, f"{linear}_0", config.noisy)
        index = 1
    else:
        if config.tokenizer == "per_patch" and config.patch_embedding == "conv":
            slots += _conv(block.tokenizer.patch_embedding, "embedding")
        moe = block.moe
        if config.penultimate == "softmoe":
            slots.append(_Slot("SoftMoE_0/phi_weights", moe.phi))
            if config.normalize:
                slots.append(_Slot("SoftMoE_0/scalar", moe.scale, scalar=True))
            elif "SoftMoE_0/scalar" in reference_paths:
                ignored.append(("SoftMoE_0/scalar",
                                "unused by the reference with normalisation off"))
        else:
            slots.append(_Slot("MoE_0/router/Dense_0/kernel", moe.router.kernel))
        experts = moe.experts
        first = (("kernel_mu", experts.kernel_in), ("kernel_sigma", experts.kernel_in_sigma),
                 ("bias_mu", experts.bias_in), ("bias_sigma", experts.bias_in_sigma)
                 ) if config.noisy else (("kernel", experts.kernel_in),
                                         ("bias", experts.bias_in))
        slots += [_Slot(f"ExpertModel_0/net/{name}", var) for name, var in first]
        slots += [_Slot("ExpertModel_0/Dense_0/kernel", experts.kernel_out),
                  _Slot("ExpertModel_0/Dense_0/bias", experts.bias_out)]
    slots += _dense(head.advantage, f"{linear}_{index}", config.noisy)
    if config.dueling:
        slots += _dense(head.value, f"{linear}_{index + 1}", config.noisy)
    return slots, ignored


def _shape_hint(config):
    return ("The NetworkConfig must describe the network that was trained: check "
            "the number of actions, encoder (and nature_padding: the reference's "
            "Nature convs are SAME), impala_stack_sizes/impala_width, hidden_units·"
            "scale (the reference's expert_hidden_units, times num_experts with "
            "scale_hidden_layer), num_experts, capacity_factor/num_slots, tokenizer, "
            "patch_size/patch_embedding_dim (the reference's embedding_size) and "
            f"num_atoms (this config: encoder={config.encoder!r}, "
            f"penultimate={config.penultimate!r}, tokenizer={config.tokenizer!r}). "
            "A reference network with use_extra_linear_layer=True has no counterpart.")


def load_flax_params(q_network, params, *, strict=True):
    """Copies a `dopamine/labs/moes` parameter tree into `q_network`.

    Args:
      q_network: a `tf_softmoe.networks.QNetwork` whose config describes the
        trained network (its variables are created here if needed).
      params: the Flax parameter tree (nested or "/"-joined flat mapping of
        array-likes; with or without the top-level `params` collection), e.g.
        `flax.core.unfreeze(agent.online_params)` or the `online_params` of
        `read_dopamine_checkpoint`.
      strict: raise `IncompleteLoadError` when a reference parameter found no
        place or a weight got no value (otherwise only the report says so).

    Returns:
      A `LoadReport`.

    Raises:
      ValueError: the config has a block, tokenizer or head the reference
        does not have.
      ShapeMismatchError: some parameters' shapes differ from the weights they
        map to (all such pairs are listed; nothing is copied).
      IncompleteLoadError: with `strict`, when the report is not complete
        (nothing is copied).
    """
    if not isinstance(q_network, q_network_lib.QNetwork):
        raise TypeError(f"q_network must be a tf_softmoe QNetwork, got "
                        f"{type(q_network).__name__}.")
    config = q_network.config
    _check_supported(config)
    if not q_network.built:
        q_network.create_variables()
    reference = flatten_params(params)
    slots, ignored = _placements(q_network, reference)
    mismatches, loaded, unset, pending = [], [], [], []
    for slot in slots:
        if slot.path not in reference:
            unset.append((slot.variable.name, slot.path))
            continue
        value = reference[slot.path]
        expected = tuple(slot.variable.shape)
        if slot.scalar and value.size == 1:
            value = value.reshape(expected)
        if tuple(value.shape) != expected:
            mismatches.append(f"  {slot.path}: reference {tuple(value.shape)}, "
                              f"{slot.variable.name} {expected}")
            continue
        pending.append((slot, value))
    if mismatches:
        raise ShapeMismatchError(
            "The reference parameters do not fit this QNetwork:\n"
            + "\n".join(mismatches) + "\n" + _shape_hint(config))
    placed = {slot.path for slot in slots} | {path for path, _ in ignored}
    unplaced = tuple(sorted(p for p in reference if p not in placed))
    mapped = {slot.variable.ref() for slot in slots}
    unset += [(v.name, "") for v in q_network.variables if v.ref() not in mapped]
    report = LoadReport(
        loaded=tuple((slot.path, slot.variable.name) for slot, _ in pending),
        unplaced=unplaced, unset=tuple(unset), ignored=tuple(ignored))
    if strict and not report.complete:
        raise IncompleteLoadError(
            "The parameter tree does not match this QNetwork one to one: "
            f"{report}. {_shape_hint(config)} Pass strict=False to load what "
            "matches anyway.")
    for slot, value in pending:
        slot.variable.assign(value.astype(slot.variable.dtype.as_numpy_dtype))
    return report


def q_network_from_flax(params, config, num_actions, *,
                        observation_shape=(84, 84, 4), strict=True,
                        name="QNetwork"):
    """Builds a `QNetwork` for uint8 frames and loads `params` into it.

    Args:
      params: a `dopamine/labs/moes` parameter tree (see `load_flax_params`).
      config: the `NetworkConfig` (or its dict) of the trained network.
      num_actions: the game's number of actions.
      observation_shape: `[height, width, stack]` of the uint8 observations.
      strict: see `load_flax_params`.
      name: the network's name.

    Returns:
      `(q_network, report)`.
    """
    if isinstance(config, dict):
        config = config_lib.NetworkConfig.from_dict(config)
    observation_spec = tensor_spec.TensorSpec(
        tuple(observation_shape), tf.uint8, name="observation")
    action_spec = tensor_spec.BoundedTensorSpec(
        (), tf.int64, minimum=0, maximum=int(num_actions) - 1, name="action")
    network = q_network_lib.build_q_network(config, observation_spec, action_spec,
                                            name=name)
    return network, load_flax_params(network, params, strict=strict)


# --- Dopamine checkpoints ---------------------------------------------------

def _rebuild_jax_array(fun, args, array_state, aval_state):
    """What `jax.Array.__reduce__` asks for, as a numpy array."""
    del aval_state  # weak typing: meaningless for numpy
    value = fun(*args)
    value.__setstate__(array_state)
    return value


def _frozen_dict(mapping=None, **kwargs):
    return dict(mapping or {}, **kwargs)


class OpaqueObject:
    """A pickled JAX/Flax/Optax object other than an array or a dict (e.g. an
    optimiser state), kept as its class name and arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<{type(self).__qualname__}>"


_NUMPY = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}
_OPAQUE_PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex")
_BUILTINS = {("collections", "OrderedDict"): collections.OrderedDict,
             ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
             ("builtins", "complex"): complex, ("builtins", "slice"): slice,
             ("builtins", "bytearray"): bytearray}


class _CheckpointUnpickler(pickle.Unpickler):
    """Resolves numpy and the JAX/Flax containers without importing them;
    refuses every other global, so a checkpoint cannot run code."""

    def find_class(self, module, name):
        if module == "jax._src.array" and name == "_reconstruct_array":
            return _rebuild_jax_array
        if module == "flax.core.frozen_dict" and name == "FrozenDict":
            return _frozen_dict
        if re.fullmatch(r"numpy(\._core|\.core)?(\.multiarray|\.numeric)?", module) and (
                name in _NUMPY):
            return super().find_class(module, name)
        if (module, name) in _BUILTINS:
            return _BUILTINS[(module, name)]
        if module.split(".")[0] in _OPAQUE_PACKAGES:
            return type(name, (OpaqueObject,), {"__module__": module})
        raise pickle.UnpicklingError(
            f"The checkpoint refers to {module}.{name}, which a Dopamine "
            "checkpoint does not hold; only numpy arrays, dicts and JAX/Flax/Optax "
            "containers are read (nothing else is imported, so a checkpoint cannot "
            "run code). Export the parameters with numpy instead.")


def read_dopamine_checkpoint(path):
    """Reads the bundle of a Dopamine JAX agent's checkpoint (`ckpt.N`).

    Dopamine's runner pickles the agent's `bundle_and_checkpoint` dict
    (`online_params`, `target_params`, `optimizer_state`, `training_steps`,
    `state`, plus `current_iteration` and `logs`). This reads it with numpy
    alone: JAX arrays become numpy arrays, Flax `FrozenDict`s dicts, and other
    JAX/Optax objects (the optimiser state) `OpaqueObject`s.

    Args:
      path: the checkpoint file (e.g. `<base_dir>/checkpoints/ckpt.199`); any
        path `tf.io.gfile` opens.

    Returns:
      The bundle dict.
    """
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    bundle = _CheckpointUnpickler(io.BytesIO(data)).load()
    if not isinstance(bundle, dict):
        raise ValueError(f"{path} holds a {type(bundle).__name__}, not the dict a "
                         "Dopamine checkpoint holds.")
    return bundle


def load_dopamine_checkpoint(q_network, path, *, which="online_params", strict=True):
    """`load_flax_params` of one parameter tree of a Dopamine checkpoint.

    Args:
      q_network: the `QNetwork` to fill.
      path: the checkpoint file (see `read_dopamine_checkpoint`).
      which: "online_params" or "target_params".
      strict: see `load_flax_params`.

    Returns:
      A `LoadReport`.
    """
    bundle = read_dopamine_checkpoint(path)
    if which not in bundle:
        raise KeyError(f"{path} has no {which!r}; it holds {sorted(bundle)}.")
    return load_flax_params(q_network, bundle[which], strict=strict)


def reference_outputs(q_network, observations, support=None) -> Dict[str, np.ndarray]:
    """The loaded network's outputs named as the reference names them.

    DQN head: `q_values [B, A]`. C51 head: `logits [B, A, atoms]`,
    `probabilities` (softmax over atoms) and `q_values = Σ support·p`, with
    the reference's default support linspace(-10, 10, atoms) unless given.
    The noise of noisy layers is off (`training=False`).
    """
    output, _ = q_network(observations, training=False)
    output = output.numpy()
    if q_network.config.head == "dqn":
        return {"q_values": output}
    if support is None:
        support = np.linspace(-10.0, 10.0, q_network.config.num_atoms)
    probabilities = tf.nn.softmax(output, axis=-1).numpy()
    return {"logits": output, "probabilities": probabilities,
            "q_values": (probabilities * np.asarray(support, np.float32)).sum(-1)}


def greedy_policy(q_network, v_max=10.0):
    """The reference's greedy policy over a loaded `QNetwork`, as a TF-Agents
    policy ready for `PolicySaver`.

    DQN head: argmax of the Q-values (`QPolicy`). C51 head: argmax of
    Σ support·softmax(logits) over the support linspace(−v_max, v_max, atoms)
    (`CategoricalQPolicy`; the reference agents' `vmax` is 10).
    """
    # Imported here: TF-Agents' policies pull in tensorflow_probability.
    from tf_agents.policies import categorical_q_policy  # pylint: disable=g-import-not-at-top
    from tf_agents.policies import greedy_policy as greedy_lib  # pylint: disable=g-import-not-at-top
    from tf_agents.policies import q_policy  # pylint: disable=g-import-not-at-top
    from tf_agents.trajectories import time_step as ts  # pylint: disable=g-import-not-at-top

    time_step_spec = ts.time_step_spec(q_network.input_tensor_spec)
    action_spec = tensor_spec.BoundedTensorSpec(
        (), tf.int64, minimum=0, maximum=q_network.num_actions - 1, name="action")
    if q_network.config.head == "c51":
        policy = categorical_q_policy.CategoricalQPolicy(
            time_step_spec, action_spec, q_network, min_q_value=-float(v_max),
            max_q_value=float(v_max))
    else:
        policy = q_policy.QPolicy(time_step_spec, action_spec, q_network)
    return greedy_lib.GreedyPolicy(policy)
