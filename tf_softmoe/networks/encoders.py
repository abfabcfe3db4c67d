"""Conv encoders of SPEC §1: Nature CNN and Impala ResNet (NHWC)."""

import tensorflow as tf

from tf_softmoe.layers import _common


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class NatureEncoder(tf.keras.layers.Layer):
    """Mnih et al. (2015) torso: conv 32 8×8/4 → conv 64 4×4/2 → conv 64 3×3/1.

    ReLU after each conv, Glorot-uniform kernels, zero biases. With "same"
    padding (the reference's choice) 84×84 becomes 11×11×64; with "valid" the
    classic 7×7×64.

    Args:
      padding: "same" or "valid".
      width: channel multiplier.
    """

    def __init__(self, padding="same", width=1, **kwargs):
        super().__init__(**kwargs)
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}.")
        self.padding = padding
        self.width = _common.check_positive_int("width", width)
        self.convs = [
            tf.keras.layers.Conv2D(
                filters * self.width, kernel, strides=stride, padding=padding,
                activation="relu", kernel_initializer="glorot_uniform",
                name=f"conv_{i}", dtype=self.dtype_policy)
            for i, (filters, kernel, stride) in enumerate(
                [(32, 8, 4), (64, 4, 2), (64, 3, 1)])
        ]

    def call(self, inputs):
        x = inputs
        for conv in self.convs:
            x = conv(x)
        return x

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        for conv in self.convs:
            shape = conv.compute_output_shape(shape)
        return shape

    def get_config(self):
        config = super().get_config()
        config.update({"padding": self.padding, "width": self.width})
        return config


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class ImpalaResidualBlock(tf.keras.layers.Layer):
    """x + conv(relu(conv(relu(x)))), 3×3 SAME convs with LeCun-normal kernels."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = _common.check_positive_int("filters", filters)
        self.conv_0 = tf.keras.layers.Conv2D(
            filters, 3, padding="same", kernel_initializer="lecun_normal",
            name="conv_0", dtype=self.dtype_policy)
        self.conv_1 = tf.keras.layers.Conv2D(
            filters, 3, padding="same", kernel_initializer="lecun_normal",
            name="conv_1", dtype=self.dtype_policy)

    def call(self, inputs):
        x = self.conv_0(tf.nn.relu(inputs))
        return inputs + self.conv_1(tf.nn.relu(x))

    def get_config(self):
        config = super().get_config()
        config["filters"] = self.filters
        return config


@tf.keras.utils.register_keras_serializable(package=_common.PACKAGE)
class ImpalaEncoder(tf.keras.layers.Layer):
    """Espeholt et al. (2018) ResNet torso as the reference runs it.

    For each stack size s: conv s 3×3/1 SAME (Glorot) → max-pool 3×3/2 SAME →
    `num_blocks` residual blocks; ReLU after the last stack.
    84 → 42 → 21 → 11: 11×11×32 with the default (16, 32, 32).

    Args:
      stack_sizes: channels per stack (before the width multiplier).
      num_blocks: residual blocks per stack.
      width: channel multiplier.
    """

    def __init__(self, stack_sizes=(16, 32, 32), num_blocks=2, width=1, **kwargs):
        super().__init__(**kwargs)
        self.stack_sizes = tuple(
            _common.check_positive_int("stack size", int(s)) for s in stack_sizes)
        self.num_blocks = _common.check_positive_int("num_blocks", num_blocks)
        self.width = _common.check_positive_int("width", width)
        self.stack_convs, self.stack_pools, self.stack_blocks = [], [], []
        for i, size in enumerate(self.stack_sizes):
            filters = size * self.width
            conv = tf.keras.layers.Conv2D(
                filters, 3, padding="same", kernel_initializer="glorot_uniform",
                name=f"stack_{i}_conv", dtype=self.dtype_policy)
            pool = tf.keras.layers.MaxPool2D(3, strides=2, padding="same",
                                             name=f"stack_{i}_pool")
            blocks = [ImpalaResidualBlock(filters, name=f"stack_{i}_block_{j}",
                                          dtype=self.dtype_policy)
                      for j in range(self.num_blocks)]
            self.stack_convs.append(conv)
            self.stack_pools.append(pool)
            self.stack_blocks.append(blocks)
        # The .keras format saves the layers it finds in an attribute or in a
        # list attribute, not in a list of lists: without this flat view of
        # the blocks their weights were left out of q_network.keras. (The
        # nested list stays: checkpoints name the blocks through it.)
        self.residual_blocks = [block for blocks in self.stack_blocks for block in blocks]

    def call(self, inputs):
        x = inputs
        for conv, pool, blocks in zip(self.stack_convs, self.stack_pools,
                                      self.stack_blocks):
            x = pool(conv(x))
            for block in blocks:
                x = block(x)
        return tf.nn.relu(x)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        for conv, pool in zip(self.stack_convs, self.stack_pools):
            shape = pool.compute_output_shape(conv.compute_output_shape(shape))
        return shape

    def get_config(self):
        config = super().get_config()
        config.update({"stack_sizes": list(self.stack_sizes),
                       "num_blocks": self.num_blocks, "width": self.width})
        return config


def make_encoder(config, dtype=None):
    """The encoder a `NetworkConfig` asks for."""
    if config.encoder == "nature":
        return NatureEncoder(padding=config.nature_padding, width=1,
                             name="encoder", dtype=dtype)
    return ImpalaEncoder(stack_sizes=config.impala_stack_sizes,
                         num_blocks=config.impala_blocks, width=config.impala_width,
                         name="encoder", dtype=dtype)
