"""resolve_jit_compile: explicit values pass through, "auto" picks per network."""

import pytest
import tensorflow as tf

from tf_softmoe.networks import NetworkConfig
from tf_softmoe.train import resolve_jit_compile

ON_ACCELERATOR = bool(tf.config.list_logical_devices("GPU")
                      + tf.config.list_logical_devices("TPU"))


@pytest.mark.parametrize("value,expected", [
    (True, True), (False, False), ("true", True), ("FALSE", False), ("1", True),
    ("no", False)])
def test_explicit_values_pass_through(value, expected):
    assert resolve_jit_compile(value, NetworkConfig(encoder="nature")) is expected


def test_unknown_value_names_the_choices():
    with pytest.raises(ValueError, match="'auto', 'true' or 'false'"):
        resolve_jit_compile("sometimes")


@pytest.mark.skipif(ON_ACCELERATOR, reason="auto is XLA on every accelerator")
@pytest.mark.parametrize("encoder,noisy,penultimate,expected", [
    ("nature", False, "softmoe", True),       # DQN-Nature, token blocks: XLA
    ("nature", False, "tokenized_sum", True),
    ("nature", False, "flatten", False),      # DQN-Nature-flatten: the graph
    ("nature", False, "gap", False),
    ("nature", True, "flatten", False),       # noisy (Rainbow): the graph
    ("nature", True, "softmoe", False),
    ("impala", False, "softmoe", False),      # every Impala network: the graph
    ("impala", True, "flatten", False),
])
def test_auto_on_cpu_follows_the_per_network_measurements(encoder, noisy,
                                                          penultimate, expected):
    config = NetworkConfig(encoder=encoder, noisy=noisy, penultimate=penultimate,
                           num_experts=4 if penultimate == "softmoe" else None)
    assert resolve_jit_compile("auto", config) is expected
    assert resolve_jit_compile("auto") is False  # no network: the graph


def test_learner_resolves_auto_from_its_agents_network():
    import numpy as np  # pylint: disable=g-import-not-at-top
    from tf_agents.specs import array_spec  # pylint: disable=g-import-not-at-top
    from tf_agents.trajectories import time_step as ts  # pylint: disable=g-import-not-at-top
    from tf_softmoe.agents import make_agent  # pylint: disable=g-import-not-at-top
    from tf_softmoe.config import ExperimentConfig  # pylint: disable=g-import-not-at-top
    from tf_softmoe.train.learner import Learner  # pylint: disable=g-import-not-at-top
    observation = array_spec.BoundedArraySpec((84, 84, 4), np.uint8, 0, 255)
    action = array_spec.BoundedArraySpec((), np.int64, 0, 5)
    for preset, expected in (("dqn", True), ("rainbow", False)):
        config = ExperimentConfig.preset(preset, encoder="nature", penultimate="softmoe",
                                         num_experts=4)
        agent = make_agent(config.agent, config.network,
                           ts.time_step_spec(observation), action)
        learner = Learner(agent, jit_compile="auto")
        assert learner.jit_compile is (expected or ON_ACCELERATOR)


def test_train_rejects_a_batch_of_the_wrong_shape():
    import numpy as np  # pylint: disable=g-import-not-at-top
    from tests.agents.catch_setup import catch, fast_setup  # pylint: disable=g-import-not-at-top
    from tf_softmoe.agents import make_agent  # pylint: disable=g-import-not-at-top
    from tf_softmoe.train import loop  # pylint: disable=g-import-not-at-top
    from tf_softmoe.train.learner import Learner  # pylint: disable=g-import-not-at-top
    env = catch(0)
    config, network = fast_setup("dqn", batch_size=4)
    agent = make_agent(config, network, env.time_step_spec(), env.action_spec())
    replay = loop.make_replay(config, env.observation_spec().shape, seed=0)
    trainer = loop.Trainer(env, agent, replay, Learner(agent, jit_compile=False), config,
                           policy_jit_compile=False)
    trainer.run(config.min_replay_history + 2)  # updates run: the flat call works
    batch = replay.sample(4)
    out = trainer.learner.train(batch)
    assert np.isfinite(out["loss"]) and out["per_sample_loss"].shape == (4,)
    short = dict(batch, action=batch["action"][:3])
    with pytest.raises(ValueError, match=r"batch\['action'\] has shape \(3,\).*batch size 4"):
        trainer.learner.train(short)


def test_rainbow_update_noise_follows_the_learner_seed_under_xla():
    # Under XLA, TensorFlow's stateful random ops ignore every seed; the
    # update's noise now comes from seeded_draws([seed, update count]).
    import numpy as np  # pylint: disable=g-import-not-at-top
    from tests.agents.catch_setup import catch, fast_setup  # pylint: disable=g-import-not-at-top
    from tests.agents.test_agents import random_batch  # pylint: disable=g-import-not-at-top
    from tf_softmoe.agents import make_agent  # pylint: disable=g-import-not-at-top
    from tf_softmoe.train.learner import Learner  # pylint: disable=g-import-not-at-top
    env = catch(0)

    def first_losses(seed, updates=2):
        tf.keras.utils.set_random_seed(0)  # the same weights for every learner
        config, network = fast_setup("rainbow", batch_size=8)
        agent = make_agent(config, network, env.time_step_spec(), env.action_spec())
        learner = Learner(agent, jit_compile=True, seed=seed)
        batch = random_batch(env, batch_size=8)
        return [learner.train(batch)["per_sample_loss"] for _ in range(updates)]

    one = first_losses(1)
    assert not np.array_equal(one[0], one[1])  # each update draws anew
    np.testing.assert_array_equal(first_losses(1)[0], one[0])
    assert not np.array_equal(first_losses(2)[0], one[0])
