"""save_q_network / load_q_network: the version in metadata.json, and the
error for files written by a newer tf_softmoe (doctored files)."""

import io
import json
import zipfile

import h5py
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec

import tf_softmoe
from tf_softmoe import networks
from tf_softmoe import saving

OBS = tensor_spec.BoundedTensorSpec([20, 20, 2], tf.uint8, 0, 255)
ACTIONS = tensor_spec.BoundedTensorSpec([], tf.int64, 0, 2)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small SoftMoE Q-network saved with save_q_network, and its outputs."""
    net = networks.build_q_network(networks.NetworkConfig(
        encoder="nature", penultimate="softmoe", num_experts=2, hidden_units=8),
        OBS, ACTIONS)
    observations = np.random.default_rng(0).integers(0, 256, [2, 20, 20, 2], np.uint8)
    path = str(tmp_path_factory.mktemp("saved") / "q_network.keras")
    assert saving.save_q_network(net, path) == path
    return path, observations, net(observations)[0].numpy()


def doctored(source, target, change_config, version="9.9.0"):
    """Copies the .keras file `source` to `target`, passing its config through
    `change_config` and recording `version` (None: no version) as its writer."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for info in original.infolist():
            data = original.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                change_config(config)
                data = json.dumps(config).encode()
            elif info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata.pop(saving.VERSION_KEY)
                if version is not None:
                    metadata[saving.VERSION_KEY] = version
                data = json.dumps(metadata).encode()
            copy.writestr(info, data)
    return str(target)


def layer_config(config, class_name):
    layer, = [layer for layer in config["config"]["layers"]
              if layer["class_name"] == class_name]
    return layer


def test_metadata_records_the_version_and_keeps_keras_fields(saved):
    path, observations, expected = saved
    metadata = saving.read_metadata(path)
    assert metadata[saving.VERSION_KEY] == tf_softmoe.__version__
    assert {"keras_version", "date_saved"} <= set(metadata)
    model = tf_softmoe.load_q_network(path)
    np.testing.assert_allclose(model(observations), expected, rtol=1e-6, atol=1e-6)
    # A plain Keras load reads the rewritten archive too.
    np.testing.assert_allclose(tf.keras.models.load_model(path)(observations), expected,
                               rtol=1e-6, atol=1e-6)


def test_a_run_directory_loads_its_q_network(saved):
    path, observations, expected = saved
    model = tf_softmoe.load_q_network(path.rpartition("/")[0])
    np.testing.assert_allclose(model(observations), expected, rtol=1e-6, atol=1e-6)


def test_missing_file_says_what_to_give(tmp_path):
    with pytest.raises(FileNotFoundError, match="holding q_network.keras"):
        tf_softmoe.load_q_network(tmp_path)
    with pytest.raises(ValueError, match="ending in .keras"):
        tf_softmoe.save_q_network(tf.keras.Sequential(), tmp_path / "model.h5")


def test_unknown_class_names_it_and_the_writer_version(saved, tmp_path):
    def rename_block(config):
        block = layer_config(config, "PenultimateBlock")
        block["class_name"] = "FutureBlock"
        block["registered_name"] = "tf_softmoe>FutureBlock"

    path = doctored(saved[0], tmp_path / "future.keras", rename_block)
    with pytest.raises(saving.IncompatibleModelError) as error:
        tf_softmoe.load_q_network(path)
    message = str(error.value)
    assert "written by tf_softmoe 9.9.0" in message
    assert "class 'tf_softmoe>FutureBlock'" in message
    assert f"tf_softmoe {tf_softmoe.__version__} (this one)" in message
    assert "Install tf_softmoe 9.9.0 or newer to load it." in message


def test_unknown_arguments_and_config_fields_are_named(saved, tmp_path):
    def add_arguments(config):
        layer_config(config, "QHead")["config"]["future_knob"] = 3
        layer_config(config, "PenultimateBlock")["config"]["router_temperature"] = 0.5

    path = doctored(saved[0], tmp_path / "future.keras", add_arguments)
    with pytest.raises(saving.IncompatibleModelError) as error:
        tf_softmoe.load_q_network(path)
    message = str(error.value)
    assert "argument 'future_knob' of tf_softmoe>QHead" in message
    assert "argument 'router_temperature' of tf_softmoe>PenultimateBlock" in message
    assert "9.9.0" in message


def test_file_without_a_version_says_so(saved, tmp_path):
    def add_argument(config):
        layer_config(config, "NatureEncoder")["config"]["future_knob"] = 1

    path = doctored(saved[0], tmp_path / "plain.keras", add_argument, version=None)
    with pytest.raises(saving.IncompatibleModelError,
                       match="a tf_softmoe version it does not record"):
        tf_softmoe.load_q_network(path)


def test_other_failures_keep_keras_error(saved, tmp_path):
    def break_keras_layer(config):
        layer_config(config, "Rescaling")["config"]["no_such_keras_argument"] = 1

    path = doctored(saved[0], tmp_path / "broken.keras", break_keras_layer)
    with pytest.raises(Exception) as error:
        tf_softmoe.load_q_network(path)
    assert not isinstance(error.value, saving.IncompatibleModelError)
    assert "no_such_keras_argument" in str(error.value)


def test_files_of_this_version_have_nothing_unknown(saved):
    with zipfile.ZipFile(saved[0]) as archive:
        config = json.loads(archive.read("config.json"))
    assert saving.unknown_parts(config) == []


def test_old_impala_export_without_block_weights_says_how_to_export_again(tmp_path):
    # Exports made before the fix left the Impala residual blocks' weights out
    # (and had no version in metadata.json); rebuild one from a new export.
    net = networks.build_q_network(networks.NetworkConfig(
        encoder="impala", penultimate="flatten", hidden_units=8,
        impala_stack_sizes=(4, 4, 4), impala_blocks=1), OBS, ACTIONS)
    source = saving.save_q_network(net, str(tmp_path / "new.keras"))
    target = str(tmp_path / "old.keras")
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for info in original.infolist():
            data = original.read(info)
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                del metadata[saving.VERSION_KEY]
                data = json.dumps(metadata).encode()
            elif info.filename == "model.weights.h5":
                weights = io.BytesIO(data)
                with h5py.File(weights, "r+") as h5:
                    del h5["layers/impala_encoder/residual_blocks"]
                data = weights.getvalue()
            copy.writestr(info, data)
    with pytest.raises(saving.IncompatibleModelError,
                       match="left out the weights of the Impala residual blocks"):
        tf_softmoe.load_q_network(target)
