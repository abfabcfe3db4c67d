"""tf_softmoe: tokenized Soft Mixture-of-Experts for deep RL in TensorFlow.

Reimplements "Don't flatten, tokenize! Unlocking the key to SoftMoE's efficacy
in deep RL" (Sokar et al., ICLR 2025) with Keras 2 layers (`tf.keras` through
`tf_keras`) and TF-Agents.

TF-Agents and every layer here need the Keras 2 API behind `tf.keras`. With
TensorFlow >= 2.16 that only holds when `TF_USE_LEGACY_KERAS=1` is set before
TensorFlow is first imported, so importing this package sets it.
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow turns its oneDNN CPU kernels on by default only on AVX-512 CPUs;
# elsewhere convolutions run on Eigen. With oneDNN the Rainbow-Impala-SoftMoE-4
# train step takes 45 % less CPU time and the plain graph beats XLA on every
# network measured (docs/performance.md). Set TF_ENABLE_ONEDNN_OPTS=0 to opt out.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

_KERAS_FIX = (
    "Set TF_USE_LEGACY_KERAS=1 in the environment (or `import tf_softmoe` before "
    "`import tensorflow`), and make sure `tf_keras` is installed "
    "(pip install 'tf-keras>=2.21,<2.22')."
)


def _check_keras_2():
    """Raises ImportError if `tf.keras` is Keras 3 in this process."""
    if os.environ.get("TF_USE_LEGACY_KERAS") not in ("1", "true", "True"):
        raise ImportError(
            "tf_softmoe needs Keras 2 behind tf.keras, but TF_USE_LEGACY_KERAS is "
            f"set to {os.environ.get('TF_USE_LEGACY_KERAS')!r}. " + _KERAS_FIX)
    tf_was_imported = "tensorflow" in sys.modules
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    # tf.keras is a lazy loader; the module that defines its layers tells
    # which Keras is behind it ("tf_keras.src..." for Keras 2, "keras..." for 3).
    layers_module = tf.keras.layers.Layer.__module__
    if not layers_module.startswith("tf_keras"):
        version = getattr(tf.keras, "version", lambda: "3")()
        where = (" TensorFlow was imported before tf_softmoe, so the variable "
                 "came too late." if tf_was_imported else "")
        raise ImportError(
            f"tf_softmoe needs Keras 2 behind tf.keras but found Keras {version} "
            f"({layers_module})."
            + where + " " + _KERAS_FIX)


_check_keras_2()

__version__ = "0.1.0"

# A saved model names each of our classes by its registered name
# ("tf_softmoe>SoftMoE"), and Keras rebuilds a layer nested in a model only if
# that name is registered, so `import tf_softmoe` alone must import every
# module that registers a class. TensorFlow and Keras are loaded already
# (above); these modules add only their own code, not TF-Agents.
from tf_softmoe import layers  # noqa: E402,F401
from tf_softmoe import networks  # noqa: E402,F401
from tf_softmoe.saving import load_q_network  # noqa: E402,F401
from tf_softmoe.saving import save_q_network  # noqa: E402,F401
