"""TF-Agents Q-network: uint8 frames → encoder → penultimate block → Q head."""

import tensorflow as tf
from tf_agents.networks import network
from tf_agents.specs import tensor_spec

from tf_softmoe.networks import config as config_lib
from tf_softmoe.networks import encoders
from tf_softmoe.networks import heads
from tf_softmoe.networks import noise as noise_lib
from tf_softmoe.networks import penultimate


def _num_actions(action_spec):
    action_spec = tensor_spec.from_spec(action_spec)
    if not tensor_spec.is_discrete(action_spec) or action_spec.shape.rank != 0:
        raise ValueError(
            f"The Q-network needs a scalar discrete action spec, got {action_spec}.")
    return int(action_spec.maximum) - int(action_spec.minimum) + 1


class QNetwork(network.Network):
    """`obs [B,H,W,C] → /255 → encoder → penultimate block → Q head`.

    Usable as it is by TF-Agents' `DqnAgent` (head "dqn": Q-values `[B, A]`)
    and `CategoricalDqnAgent` (head "c51": logits `[B, A, atoms]`, and the
    `num_atoms` property). `copy()` rebuilds it from the same arguments, which
    is how TF-Agents makes the target network.

    `call_with_diagnostics(observation, training)` returns
    `(output, diagnostics)` where diagnostics holds `penultimate` (the
    features fed to the head, `[B, F]`), `hidden` (the penultimate hidden
    units for dormant-neuron counts) and, for MoE blocks, the routing
    statistics. Everything is a tensor, so it runs inside XLA.

    Noise (noisy configs), as the reference draws it: a pass called with
    `training=True` and no `noise` draws fresh noise, one draw per sample,
    one for all hidden/head layers and one shared by all experts;
    `call(..., noise=NetworkNoise.from_seed(seed, batch_size))` fixes it (the
    same seed gives the same noise in any network of this configuration).

    Args:
      input_tensor_spec: observation spec, `[H, W, C]` (uint8 frames are
        divided by 255; float observations are used as they are).
      action_spec: scalar discrete action spec.
      config: a `NetworkConfig` (or its dict).
      name: network name.

    Raises:
      ValueError: the observation spec does not fit the encoder or tokenizer
        (the message names both shapes), or the action spec is not discrete.
    """

    def __init__(self, input_tensor_spec, action_spec, config=None, name="QNetwork"):
        input_tensor_spec = tensor_spec.from_spec(input_tensor_spec)
        super().__init__(input_tensor_spec=input_tensor_spec, state_spec=(), name=name)
        if config is None:
            config = config_lib.NetworkConfig()
        elif isinstance(config, dict):
            config = config_lib.NetworkConfig.from_dict(config)
        self._config = config
        self._num_actions = _num_actions(action_spec)
        self._scale_input = input_tensor_spec.dtype == tf.uint8
        compute = "mixed_bfloat16" if config.mixed_precision else None
        self._encoder = encoders.make_encoder(config, dtype=compute)
        self._penultimate = penultimate.PenultimateBlock(
            **penultimate.block_arguments(config), name="penultimate", dtype=compute)
        self._head = heads.QHead(
            self._num_actions, num_atoms=config.num_atoms if config.head == "c51" else None,
            dueling=config.dueling, noisy=config.noisy, sigma0=config.noisy_sigma0,
            name="head")
        self.feature_map_shape = self._check_observation_spec(input_tensor_spec)

    def _check_observation_spec(self, spec):
        shape = tf.TensorShape(spec.shape)
        shown = shape.as_list() if shape.rank is not None else "of unknown rank"
        expected = ("[height, width, channels] (e.g. [84, 84, 4] stacked "
                    "uint8 frames)")
        if shape.rank != 3 or not shape.is_fully_defined():
            raise ValueError(
                f"Observation spec shape {shown} does not fit the "
                f"{self._config.encoder} encoder, which expects {expected}.")
        too_small = (
            f"Observation spec shape {shown} is too small for the "
            f"{self._config.encoder} encoder (padding {self._config.nature_padding!r})"
        )
        try:
            map_shape = self._encoder.compute_output_shape([None] + shape.as_list())
        except ValueError as error:
            raise ValueError(f"{too_small}: {error} Use larger frames or 'same' "
                             "padding.") from error
        if any(d is None or d < 1 for d in map_shape[1:]):
            raise ValueError(
                f"{too_small}: its feature map would be {map_shape[1:].as_list()}. "
                "Use larger frames or 'same' padding.")
        try:
            self._penultimate.compute_output_shape(map_shape)
        except ValueError as error:
            raise ValueError(
                f"Observation spec shape {shown} gives a {tuple(map_shape[1:])} feature "
                f"map "
                f"that the {self._config.tokenizer} tokenizer cannot use: {error}"
            ) from error
        return tuple(int(d) for d in map_shape[1:])

    @property
    def config(self):
        return self._config

    @property
    def num_atoms(self):
        """Atoms of the C51 head (TF-Agents' CategoricalDqnAgent reads this)."""
        return self._config.num_atoms if self._config.head == "c51" else 1

    @property
    def num_actions(self):
        return self._num_actions

    def _preprocess(self, observation):
        x = tf.cast(observation, tf.float32)
        if self._scale_input:
            x = x * (1.0 / 255.0)
        return x

    def _pass_noise(self, observation, training, noise):
        """The `NetworkNoise` of this pass: the one given, else fresh noise
        with one draw per sample (the reference's acting passes), else None
        when no noisy layer will draw."""
        config = self._config
        if not config.noisy or noise is not None:
            return noise
        if training or (config.expert_noise_in_eval
                        and config.penultimate in config_lib.MOE_PENULTIMATES):
            return noise_lib.NetworkNoise.fresh(batch_size=tf.shape(observation)[0])
        return None

    def call_with_diagnostics(self, observation, step_type=None, network_state=(),
                              training=False, noise=None):
        """Like `call`, but returns `(output, diagnostics)` (see class doc)."""
        del step_type, network_state  # stateless network
        noise = self._pass_noise(observation, training, noise)
        feature_map = self._encoder(self._preprocess(observation))
        features, diagnostics = self._penultimate(
            feature_map, training=training, return_diagnostics=True, noise=noise)
        output = self._head(features, training=training,
                            noise=None if noise is None else noise.features)
        diagnostics["penultimate"] = tf.cast(features, tf.float32)
        return output, diagnostics

    def call(self, observation, step_type=None, network_state=(), training=False,
             noise=None):
        """Q-values `[B, A]` or logits `[B, A, atoms]`.

        Args:
          observation: `[B, H, W, C]` frames.
          step_type, network_state: TF-Agents' arguments (stateless network).
          training: the noisy layers draw noise when True (the experts' also
            when False, if `config.expert_noise_in_eval`).
          noise: a `NetworkNoise` fixing this pass's noise; None draws fresh
            noise, one draw per sample.
        """
        noise = self._pass_noise(observation, training, noise)
        feature_map = self._encoder(self._preprocess(observation))
        features = self._penultimate(feature_map, training=training, noise=noise)
        return self._head(features, training=training,
                          noise=None if noise is None else noise.features), network_state

    def as_keras_model(self):
        """A functional `tf.keras.Model` sharing this network's layers.

        `uint8 frames → Rescaling(1/255) → encoder → penultimate → head`, all
        registered layers, so `model.save("q_network.keras")` and
        `tf.keras.models.load_model` work without custom objects.
        """
        spec = self.input_tensor_spec
        inputs = tf.keras.Input(spec.shape, dtype=spec.dtype, name="observation")
        x = tf.keras.layers.Rescaling(1.0 / 255.0 if self._scale_input else 1.0,
                                      name="frame_scaling")(inputs)
        outputs = self._head(self._penultimate(self._encoder(x)))
        return tf.keras.Model(inputs, outputs, name=f"{self.name}_keras")

    def layer_parameter_counts(self):
        """Trainable parameters of encoder, penultimate block and head."""
        return {"encoder": self._encoder.count_params(),
                "penultimate": self._penultimate.count_params(),
                "head": self._head.count_params()}


def build_q_network(config, observation_spec, action_spec, name="QNetwork"):
    """Builds a `QNetwork` and creates its variables."""
    net = QNetwork(observation_spec, action_spec, config=config, name=name)
    net.create_variables()
    return net
