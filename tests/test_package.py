"""Importing the package: Keras 2 is selected, Keras 3 is refused clearly."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python(code, **environ):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO, **environ)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300, check=False)


def test_import_selects_keras_2_even_after_tensorflow():
    env = dict(os.environ)
    env.pop("TF_USE_LEGACY_KERAS", None)
    result = subprocess.run(
        [sys.executable, "-c", "import tensorflow as tf; import tf_softmoe; "
         "print(tf.keras.layers.Layer.__module__)"],
        capture_output=True, text=True, timeout=300, check=False,
        env=dict(env, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().startswith("tf_keras")


def test_keras_3_behind_tf_keras_raises_an_import_error_saying_what_to_do():
    result = python("import tensorflow as tf; tf.keras.layers; import tf_softmoe",
                    TF_USE_LEGACY_KERAS="0")
    assert result.returncode != 0
    assert "ImportError: tf_softmoe needs Keras 2 behind tf.keras" in result.stderr
    assert "Set TF_USE_LEGACY_KERAS=1" in result.stderr
