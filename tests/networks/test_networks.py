"""Encoders, penultimate blocks, heads and the TF-Agents QNetwork."""

import copy

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec

from tf_softmoe import networks

OBS = tensor_spec.BoundedTensorSpec([84, 84, 4], tf.uint8, 0, 255)
ACTIONS = tensor_spec.BoundedTensorSpec([], tf.int64, 0, 5)


def frames(batch=2, seed=0):
    return tf.constant(np.random.default_rng(seed).integers(
        0, 256, size=(batch, 84, 84, 4), dtype=np.uint8))


@pytest.mark.parametrize("encoder,padding,expected", [
    ("nature", "same", (11, 11, 64)), ("nature", "valid", (7, 7, 64)),
    ("impala", "same", (11, 11, 32))])
def test_encoder_feature_maps(encoder, padding, expected):
    config = networks.NetworkConfig(encoder=encoder, nature_padding=padding)
    enc = networks.make_encoder(config)
    assert enc(tf.zeros([2, 84, 84, 4])).shape == (2,) + expected
    assert tuple(enc.compute_output_shape([2, 84, 84, 4])) == (2,) + expected


def test_impala_width_and_initialisers():
    enc = networks.ImpalaEncoder(width=2)
    assert enc(tf.zeros([1, 84, 84, 4])).shape == (1, 11, 11, 64)
    stack_conv = enc.stack_convs[0]
    assert stack_conv.kernel_initializer.__class__.__name__ == "GlorotUniform"
    block_conv = enc.stack_blocks[0][0].conv_0
    assert block_conv.kernel_initializer.__class__.__name__ == "LecunNormal"
    nature = networks.NatureEncoder()
    nature(tf.zeros([1, 84, 84, 4]))
    assert all(c.kernel_initializer.__class__.__name__ == "GlorotUniform"
               for c in nature.convs)
    assert all(np.all(c.bias.numpy() == 0) for c in nature.convs)


def test_impala_residual_block_formula():
    block = networks.encoders.ImpalaResidualBlock(3)
    x = tf.random.normal([1, 5, 5, 3])
    y = block(x)
    manual = x + block.conv_1(tf.nn.relu(block.conv_0(tf.nn.relu(x))))
    np.testing.assert_allclose(y, manual, atol=1e-6)


IMPALA_FEATURES = 11 * 11 * 32  # 3872
NATURE_FEATURES = 11 * 11 * 64  # 7744


@pytest.mark.parametrize("config,penultimate_params,features", [
    # Impala ×4 flatten: 3872·2048 + 2048 (issue's figure).
    (dict(encoder="impala", penultimate="flatten", scale=4),
     IMPALA_FEATURES * 2048 + 2048, 2048),
    (dict(encoder="impala", penultimate="flatten"), IMPALA_FEATURES * 512 + 512, 512),
    # SoftMoE-4 (Impala): Φ 32·4·31 + 4 experts of 33 312.
    (dict(encoder="impala", penultimate="softmoe", num_experts=4),
     32 * 4 * 31 + 4 * 33312, IMPALA_FEATURES),
    # Scaled SoftMoE-1: one expert of 2048, Φ 32·1·121.
    (dict(encoder="impala", penultimate="softmoe", num_experts=1, scale=4),
     32 * 121 + (32 * 2048 + 2048 + 2048 * 32 + 32), IMPALA_FEATURES),
    (dict(encoder="nature", penultimate="softmoe", num_experts=8),
     64 * 8 * 16 + 8 * (64 * 512 * 2 + 512 + 64), NATURE_FEATURES),
    (dict(encoder="impala", penultimate="tokenized_sum", scale=4),
     32 * 2048 + 2048, 2048),
    (dict(encoder="impala", penultimate="tokenized_avg"), 32 * 512 + 512, 512),
    (dict(encoder="nature", penultimate="gap"), 64 * 512 + 512, 512),
    (dict(encoder="impala", penultimate="topk_moe", num_experts=4),
     32 * 4 + 4 * 33312, IMPALA_FEATURES),
    (dict(encoder="impala", penultimate="expert_choice", num_experts=4),
     32 * 4 + 4 * 33312, IMPALA_FEATURES),
    (dict(encoder="impala", penultimate="softmoe", tokenizer="per_feat"),
     121 * 4 * 8 + 4 * (121 * 512 * 2 + 512 + 121), 32 * 121),
    (dict(encoder="impala", penultimate="softmoe", tokenizer="per_patch"),
     (3 * 3 * 32 * 32 + 32) + 32 * 4 * 3 + 4 * 33312, 9 * 32),
])
def test_paper_configurations_shapes_and_parameter_counts(
        config, penultimate_params, features):
    net = networks.build_q_network(networks.NetworkConfig(**config), OBS, ACTIONS)
    counts = net.layer_parameter_counts()
    assert counts["penultimate"] == penultimate_params
    assert counts["head"] == features * 6 + 6
    q, state = net(frames())
    assert q.shape == (2, 6) and state == ()
    _, diagnostics = net.call_with_diagnostics(frames())
    assert diagnostics["penultimate"].shape == (2, features)
    if net.config.penultimate in networks.MOE_PENULTIMATES:
        assert diagnostics["gate"].shape == (net.config.experts,)
        assert diagnostics["tokens_per_expert"].shape == (net.config.experts,)


def test_c51_dueling_noisy_head():
    config = networks.NetworkConfig(encoder="nature", head="c51", dueling=True,
                                    noisy=True, noisy_sigma0=0.5)
    net = networks.build_q_network(config, OBS, ACTIONS)
    assert net.num_atoms == 51
    logits, _ = net(frames())
    assert logits.shape == (2, 6, 51)
    a, _ = net(frames(), training=True)
    b, _ = net(frames(), training=True)
    assert not np.allclose(a, b)
    # The reference's experts stay noisy in eval mode; the head does not.
    assert not np.allclose(net(frames(), training=False)[0], logits, atol=1e-5)
    head = net._head  # pylint: disable=protected-access
    assert isinstance(head.advantage, networks.heads.layers.NoisyDense)
    assert isinstance(head.value, networks.heads.layers.NoisyDense)
    quiet = networks.build_q_network(config.replace(expert_noise_in_eval=False), OBS,
                                     ACTIONS)
    np.testing.assert_allclose(quiet(frames())[0], quiet(frames(), training=False)[0],
                               atol=1e-5)


@pytest.mark.parametrize("penultimate", ["softmoe", "flatten"])
def test_network_noise_from_a_seed_is_reproducible_and_per_sample(penultimate):
    kwargs = {"num_experts": 2} if penultimate == "softmoe" else {}
    config = networks.NetworkConfig(encoder="nature", penultimate=penultimate,
                                    hidden_units=16, head="c51", dueling=True,
                                    noisy=True, noisy_sigma0=0.5, **kwargs)
    net = networks.build_q_network(config, OBS, ACTIONS)
    twin = net.copy(name="twin")
    twin.create_variables()
    for target, source in zip(twin.variables, net.variables):
        target.assign(source)
    same = np.repeat(frames()[:1], 3, axis=0)
    shared = networks.NetworkNoise.from_seed([4, 2])
    a = net(same, training=True, noise=shared)[0].numpy()
    b = twin(same, training=True, noise=networks.NetworkNoise.from_seed([4, 2]))[0].numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # same seed, same noise
    np.testing.assert_allclose(a[0], a[1], rtol=1e-5, atol=1e-6)  # one draw for all
    per_sample = net(same, training=True,
                     noise=networks.NetworkNoise.from_seed([4, 2], batch_size=3))[0]
    assert not np.allclose(per_sample[0], per_sample[1])


def test_dueling_is_value_plus_centred_advantage():
    head = networks.QHead(3, dueling=True)
    x = tf.random.normal([4, 7])
    q = head(x).numpy()
    adv = head.advantage(x).numpy()
    value = head.value(x).numpy()
    np.testing.assert_allclose(q, value + adv - adv.mean(1, keepdims=True), atol=1e-5)


def test_copy_and_deepcopy_make_independent_networks():
    net = networks.build_q_network(networks.NetworkConfig(), OBS, ACTIONS)
    target = net.copy(name="TargetQNetwork")
    target.create_variables()
    assert target.config == net.config
    assert len(target.trainable_variables) == len(net.trainable_variables)
    assert all(a is not b for a, b in zip(net.variables, target.variables))
    clone = copy.deepcopy(net)
    clone.create_variables()
    for a, b in zip(clone.variables, net.variables):
        b.assign(a)  # clones start from their own init; make them equal first
    np.testing.assert_allclose(clone(frames())[0], net(frames())[0], atol=1e-5)


@pytest.mark.parametrize("encoder", ["nature", "impala"])
def test_keras_file_keeps_every_weight(encoder, tmp_path):
    # The .keras format once left the Impala residual blocks (a list of
    # lists) out of the file, and the loaded model ran on fresh weights.
    net = networks.build_q_network(networks.NetworkConfig(
        encoder=encoder, hidden_units=8, impala_stack_sizes=(4, 8, 8)), OBS, ACTIONS)
    model = net.as_keras_model()
    path = str(tmp_path / "q_network.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    assert len(loaded.weights) == len(model.weights) == len(net.weights)
    for saved, restored in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(saved.numpy(), restored.numpy(), err_msg=saved.name)
    np.testing.assert_allclose(loaded(frames()), net(frames())[0], rtol=1e-5, atol=1e-5)


def test_xla_matches_eager():
    net = networks.build_q_network(
        networks.NetworkConfig(encoder="impala", head="c51", dueling=True), OBS, ACTIONS)
    x = frames()
    eager = net(x)[0]
    xla = tf.function(lambda o: net(o)[0], jit_compile=True)(x)
    np.testing.assert_allclose(eager, xla, rtol=1e-4, atol=1e-4)


def test_mixed_precision_network_outputs_float32():
    net = networks.build_q_network(
        networks.NetworkConfig(mixed_precision=True), OBS, ACTIONS)
    q, _ = net(frames())
    assert q.dtype == tf.float32
    assert all(v.dtype == tf.float32 for v in net.trainable_variables)


def test_small_observations_work_with_same_padding():
    spec = tensor_spec.BoundedTensorSpec([10, 5, 1], tf.uint8, 0, 255)
    net = networks.build_q_network(
        networks.NetworkConfig(encoder="nature", hidden_units=16), spec,
        tensor_spec.BoundedTensorSpec([], tf.int64, 0, 2))
    assert net.feature_map_shape == (2, 1, 64)
    assert net(tf.zeros([3, 10, 5, 1], tf.uint8))[0].shape == (3, 3)


@pytest.mark.parametrize("spec,match", [
    (tensor_spec.TensorSpec([84, 84], tf.uint8), r"\[84, 84\].*\[height, width, channels\]"),
    (tensor_spec.TensorSpec([20, 20, 4], tf.uint8), r"\[20, 20, 4\] is too small.*valid"),
])
def test_observation_spec_that_does_not_fit(spec, match):
    with pytest.raises(ValueError, match=match):
        networks.QNetwork(spec, ACTIONS, networks.NetworkConfig(
            encoder="nature", nature_padding="valid"))


def test_tokenizer_that_does_not_fit_names_both_shapes():
    spec = tensor_spec.TensorSpec([16, 16, 1], tf.uint8)
    config = networks.NetworkConfig(encoder="nature", tokenizer="per_patch",
                                    patch_size=5)
    with pytest.raises(ValueError, match=r"\[16, 16, 1\].*\(2, 2, 64\).*patch_size"):
        networks.QNetwork(spec, ACTIONS, config)


@pytest.mark.parametrize("kwargs,match", [
    (dict(penultimate="flatten", num_experts=4), "num_experts=4 conflicts with penultimate='flatten'"),
    (dict(penultimate="gap", num_slots=1), "num_slots=1 only applies to penultimate='softmoe'"),
    (dict(penultimate="softmoe", top_k=2), "top_k=2 only applies"),
    (dict(penultimate="topk_moe", num_experts=2, top_k=3), "top_k=3 exceeds num_experts=2"),
    (dict(penultimate="dense"), "penultimate='dense' is not valid"),
    (dict(encoder="resnet"), "encoder='resnet' is not valid"),
    (dict(scale=0), "scale must be an integer >= 1"),
])
def test_inconsistent_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        networks.NetworkConfig(**kwargs)


def test_config_dict_round_trip():
    config = networks.NetworkConfig(encoder="nature", penultimate="softmoe",
                                    num_experts=8, normalize=True)
    assert networks.NetworkConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="Unknown NetworkConfig fields"):
        networks.NetworkConfig.from_dict({"experts": 3})
