"""Trainer(overlap_updates=True): updates on a background thread, acting
with a copy of the network synced after each update."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tf_softmoe import agents
from tf_softmoe.train import config as config_lib
from tf_softmoe.train import experiment
from tf_softmoe.train import learner as learner_lib
from tf_softmoe.train import loop
from tests.agents.catch_setup import SMALL_NET, catch, fast_setup

def make_trainer(preset, overlap, **overrides):
    env = catch(0)
    config, network = fast_setup(preset, **overrides)
    agent = agents.make_agent(config, network, env.time_step_spec(), env.action_spec())
    replay = loop.make_replay(config, env.observation_spec().shape, seed=0)
    learner = learner_lib.Learner(agent, jit_compile=False)
    trainer = loop.Trainer(env, agent, replay, learner, config, seed=0,
                           overlap_updates=overlap)
    return trainer, agent, replay, learner


def network_values(network):
    """Variable values by name below the network's scope."""
    prefix = network.name + "/"
    return [v.numpy() for v in sorted(network.variables, key=lambda v: v.name)
            if v.name.startswith(prefix)]


@pytest.mark.parametrize("preset", ["dqn", "rainbow"])
def test_overlap_runs_the_serial_loops_updates_and_ends_synced(preset):
    trainer, agent, replay, _ = make_trainer(preset, overlap=True, update_period=4,
                                             min_replay_history=40, batch_size=8)
    online = agent.q_network
    acting = trainer._acting_network  # pylint: disable=protected-access
    assert not {id(v) for v in acting.variables} & {id(v) for v in online.variables}
    assert len(network_values(acting)) == len(online.variables)
    stats = trainer.run(101)
    # Steps 40, 44, ..., 100: the serial loop's 16 updates, all recorded.
    assert stats.updates == 16 == int(agent.train_step_counter.numpy())
    assert len(stats.losses) == 16 and np.all(np.isfinite(stats.losses))
    assert trainer._pending is None  # pylint: disable=protected-access
    for a, b in zip(network_values(acting), network_values(online)):
        np.testing.assert_array_equal(a, b)
    if replay.prioritized:  # priorities were written back from the thread's losses
        priorities = replay.get_priorities(np.arange(len(replay)))
        assert len(set(np.round(priorities, 6))) > 1
    trainer.close()
    trainer.run(8)  # a closed trainer starts a new thread when it needs one
    assert int(agent.train_step_counter.numpy()) == 18
    trainer.close()


def test_actions_between_updates_come_from_the_previous_updates_network():
    trainer, agent, _, _ = make_trainer("dqn", overlap=True, update_period=4,
                                        min_replay_history=40, batch_size=8)
    trainer.run(44)  # the update at step 44 is started and finished by run()
    online = agent.q_network
    before = network_values(trainer._acting_network)  # pylint: disable=protected-access
    for v in online.trainable_variables:
        v.assign(v + 1.0)
    # A new phase syncs first (the online network may have been restored).
    trainer.run(1)
    after = network_values(trainer._acting_network)  # pylint: disable=protected-access
    assert not all(np.array_equal(a, b) for a, b in zip(before, after))
    for a, b in zip(after, network_values(online)):
        np.testing.assert_array_equal(a, b)
    trainer.close()


def test_dqn_softmoe_learns_catch_with_overlapped_updates():
    # Python's `random` too: tf-keras draws the seed of an unseeded
    # initializer from it, so without it the initial weights (and whether
    # 1 000 steps suffice) change from process to process.
    tf.keras.utils.set_random_seed(0)
    trainer, agent, _, _ = make_trainer("dqn", overlap=True)
    stats = trainer.run(1000)
    trainer.close()
    assert stats.updates == 1000 - 200 + 1
    returns, _ = loop.evaluate(catch(1), agent.policy, num_episodes=30)
    assert np.mean(returns) >= 0.9, returns


def test_experiment_with_overlap_resumes_and_counts_updates(tmp_path):
    agent = agents.AgentConfig.preset(
        "dqn", min_replay_history=40, update_period=2, target_update_period=20,
        epsilon_decay_steps=100, replay_capacity=1000, batch_size=8)
    schedule = config_lib.ScheduleConfig(num_iterations=1, steps_per_iteration=60,
                                         diagnostics_period=5, jit_compile="false",
                                         overlap_updates=True)
    config = config_lib.ExperimentConfig(
        game="catch", env_overrides={"rows": 6, "columns": 3,
                                     "observation_shape": [12, 6, 1]},
        agent=agent, network=SMALL_NET, schedule=schedule)
    root = str(tmp_path / "run")
    experiment.Experiment(config, root, handle_signals=False).run()
    longer = dataclasses.replace(config, schedule=dataclasses.replace(
        schedule, num_iterations=2))
    run = experiment.Experiment(longer, root, handle_signals=False)
    run.run()
    # Updates at agent steps 40, 42, ..., 120.
    assert int(run.agent.train_step_counter.numpy()) == 41
    assert int(run.agent.agent_step.numpy()) == 120


def test_paired_variables_refuses_networks_that_differ():
    env = catch(0)
    agent = agents.make_agent(*fast_setup("dqn"), env.time_step_spec(),
                              env.action_spec())
    online = agent.q_network
    other = agents.make_agent(*fast_setup("dqn", num_experts=4),
                              env.time_step_spec(), env.action_spec()).q_network
    copy = online.copy(name="Copy")
    copy.create_variables()
    pairs = loop.paired_variables(copy, online)
    assert len(pairs) == len(online.variables)
    assert all(a.shape == b.shape and a.name.split("/", 1)[1] == b.name.split("/", 1)[1]
               for a, b in pairs)
    with pytest.raises(ValueError, match="do not hold the same variables"):
        loop.paired_variables(other, online)


def test_overlap_updates_must_be_a_bool():
    with pytest.raises(ValueError, match="overlap_updates must be True or False"):
        config_lib.ScheduleConfig(overlap_updates="yes")
