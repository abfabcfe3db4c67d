"""PenultimateBlock's explicit arguments, and files saved when it took a
whole NetworkConfig."""

import json
import pathlib
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec

import tf_softmoe
from tf_softmoe import networks
from tf_softmoe import saving
from tf_softmoe.networks import penultimate

DATA = pathlib.Path(__file__).parent / "data"
# Saved by tf_softmoe at commit 6ceb83c, whose PenultimateBlock config held a
# NetworkConfig dict (Impala 2-2-2, SoftMoE of 2 experts of 8 units, PerPatch
# 2×2 with its default embedding, 3 slots, normalize); the .npz holds its
# Q-values for two observations.
OLD_FILE = DATA / "softmoe_v_network_config.keras"
OLD_OUTPUTS = DATA / "softmoe_v_network_config.npz"

OBS = tensor_spec.BoundedTensorSpec([20, 20, 2], tf.uint8, 0, 255)
ACTIONS = tensor_spec.BoundedTensorSpec([], tf.int64, 0, 2)


def block_config(model_config):
    block, = [layer for layer in model_config["config"]["layers"]
              if layer["class_name"] == "PenultimateBlock"]
    return block["config"]


def archive_config(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))


def test_the_old_file_still_holds_a_network_config():
    old = block_config(archive_config(OLD_FILE))
    assert old["config"]["penultimate"] == "softmoe"
    assert "kind" not in old


def test_a_file_saved_with_a_network_config_loads_with_its_outputs(tmp_path):
    expected = np.load(OLD_OUTPUTS)
    model = tf_softmoe.load_q_network(OLD_FILE)
    np.testing.assert_allclose(model(expected["observations"]), expected["q_values"],
                               rtol=1e-6, atol=1e-6)
    block = model.get_layer("penultimate")
    assert (block.kind, block.width, block.num_experts, block.num_slots) == (
        "softmoe", 8, 2, 3)
    assert block.normalize and block.tokenizer_kind == "per_patch"
    # An Impala encoder's PerPatch embedding is 32 wide unless set.
    assert (block.patch_size, block.patch_embedding_dim) == (2, 32)
    # Saved again, it is written with the explicit arguments and still loads.
    path = saving.save_q_network(model, str(tmp_path / "again.keras"))
    new = block_config(archive_config(path))
    assert "config" not in new
    assert new["kind"] == "softmoe" and new["num_slots"] == 3
    np.testing.assert_allclose(tf_softmoe.load_q_network(path)(expected["observations"]),
                               expected["q_values"], rtol=1e-6, atol=1e-6)


def test_old_style_config_dict_maps_to_the_arguments():
    network_config = networks.NetworkConfig(
        encoder="nature", penultimate="topk_moe", num_experts=3, top_k=2,
        hidden_units=16, scale=2, capacity_factor=1.5, noisy=True, noisy_sigma0=0.3,
        expert_noise_in_eval=False, tokenizer="shuffled", shuffle_seed=7,
        shuffle_scope="positions")
    block = penultimate.PenultimateBlock.from_config(
        {"name": "penultimate", "trainable": True, "dtype": "float32",
         "config": network_config.to_dict()})
    assert block.get_config() == {
        **block.get_config(), "kind": "topk_moe", "width": 32, "num_experts": 3,
        "top_k": 2, "capacity_factor": 1.5, "noisy": True, "sigma0": 0.3,
        "expert_noise_in_eval": False, "tokenizer": "shuffled", "shuffle_seed": 7,
        "shuffle_scope": "positions", "patch_embedding_dim": 64}
    assert block.name == "penultimate"
    assert block.moe.k == 2 and block.moe.num_experts == 3


def test_get_config_round_trips_the_arguments():
    arguments = {"kind": "tokenized_avg", "width": 6, "tokenizer": "per_patch",
                 "patch_size": 2, "patch_embedding": "avg_pool", "noisy": True,
                 "sigma0": 0.2}
    block = penultimate.PenultimateBlock(**arguments, name="block")
    config = block.get_config()
    assert {key: config[key] for key in arguments} == arguments
    assert "config" not in config
    copy = penultimate.PenultimateBlock.from_config(config)
    assert copy.get_config() == config
    feature_map = tf.random.stateless_normal([2, 4, 4, 3], seed=[1, 2])
    assert copy(feature_map).shape == [2, 6]


def test_q_network_passes_its_config_to_the_block():
    config = networks.NetworkConfig(encoder="nature", penultimate="softmoe",
                                    num_experts=2, hidden_units=8, scale=3,
                                    tokenizer="per_patch", patch_size=2)
    net = networks.build_q_network(config, OBS, ACTIONS)
    block = net.as_keras_model().get_layer("penultimate")
    assert block.get_config() == {**block.get_config(),
                                  **penultimate.block_arguments(config)}
    assert (block.width, block.num_experts, block.patch_embedding_dim) == (24, 2, 64)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match=r"Unknown penultimate block kind 'soft_moe'.*"
                                         r"'softmoe'"):
        penultimate.PenultimateBlock(kind="soft_moe")


def test_old_file_with_a_future_network_config_field_names_it(tmp_path):
    target = tmp_path / "future.keras"
    with zipfile.ZipFile(OLD_FILE) as original, zipfile.ZipFile(target, "w") as copy:
        for info in original.infolist():
            data = original.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                block_config(config)["config"]["router_temperature"] = 0.5
                data = json.dumps(config).encode()
            copy.writestr(info, data)
    assert saving.unknown_parts(archive_config(OLD_FILE)) == []
    with pytest.raises(saving.IncompatibleModelError,
                       match=r"NetworkConfig field 'router_temperature' \(in "
                             r"tf_softmoe>PenultimateBlock\)"):
        tf_softmoe.load_q_network(target)
