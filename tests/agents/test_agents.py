"""DQN and Rainbow agents: losses by hand, target sync, priorities, learning."""

import numpy as np
import pytest
import tensorflow as tf

from tf_softmoe import agents
from tf_softmoe import config as config_lib
from tf_softmoe import networks
from tf_softmoe.agents import rainbow_agent
from tf_softmoe.train import learner as learner_lib
from tf_softmoe.train import loop
from tests.agents.catch_setup import catch, fast_setup


def random_batch(env, batch_size=32, seed=0, terminal_every=3):
    rng = np.random.default_rng(seed)
    shape = env.observation_spec().shape
    discount = np.full(batch_size, 0.99 ** 3, np.float32)
    discount[::terminal_every] = 0.0
    return {
        "state": rng.integers(0, 256, (batch_size,) + shape).astype(np.uint8),
        "next_state": rng.integers(0, 256, (batch_size,) + shape).astype(np.uint8),
        "action": rng.integers(0, 3, batch_size).astype(np.int32),
        "reward": rng.normal(size=batch_size).astype(np.float32),
        "discount": discount,
        "importance_weights": rng.uniform(0.2, 1.0, batch_size).astype(np.float32),
    }


def test_presets_match_the_spec():
    dqn = agents.AgentConfig.preset("dqn")
    assert (dqn.kind, dqn.n_step, dqn.gamma, dqn.loss) == ("dqn", 1, 0.99, "mse")
    assert (dqn.learning_rate, dqn.adam_epsilon) == (6.25e-5, 1.5e-4)
    assert (dqn.min_replay_history, dqn.update_period, dqn.target_update_period) == (
        20_000, 4, 8_000)
    assert (dqn.epsilon_end, dqn.epsilon_decay_steps, dqn.epsilon_eval) == (
        0.01, 250_000, 0.001)
    assert not dqn.prioritized and dqn.replay_capacity == 1_000_000
    rainbow = agents.AgentConfig.preset("rainbow")
    assert (rainbow.kind, rainbow.n_step) == ("rainbow", 3)
    assert (rainbow.v_min, rainbow.v_max) == (-10.0, 10.0)
    assert rainbow.prioritized and rainbow.double_q
    der = agents.AgentConfig.preset("der")
    assert (der.n_step, der.learning_rate, der.min_replay_history) == (10, 1e-4, 1_600)
    assert (der.update_period, der.target_update_period) == (1, 2_000)
    # TF-Agents counts target periods in updates: 8000 agent steps / 4.
    assert rainbow.train_steps_per_target_update == 2_000
    # The network each preset trains is the experiment preset's.
    for name, network in (("rainbow", ("c51", 51, True, True, 0.1)),
                          ("der", ("c51", 51, True, True, 0.1)),
                          ("dqn", ("dqn", 51, False, False, 0.1))):
        built = config_lib.ExperimentConfig.preset(name).network
        assert (built.head, built.num_atoms, built.dueling, built.noisy,
                built.noisy_sigma0) == network, name
    with pytest.raises(ValueError, match="belong to NetworkConfig"):
        agents.AgentConfig.preset("rainbow", noisy=False)


def test_agent_and_network_must_fit_and_nothing_is_rewritten():
    env = catch(0)
    rainbow = agents.AgentConfig.preset("rainbow")
    plain = networks.NetworkConfig(encoder="nature", hidden_units=16)
    with pytest.raises(ValueError, match="needs the network head 'c51'"):
        agents.make_agent(rainbow, plain, env.time_step_spec(), env.action_spec())
    with pytest.raises(ValueError, match="needs the network head 'dqn'"):
        config_lib.ExperimentConfig(agent=agents.AgentConfig.preset("dqn"),
                                    network=plain.replace(head="c51"))


def test_epsilon_schedule_is_dopamines_linear_decay():
    config = agents.AgentConfig.preset("dqn", min_replay_history=100,
                                       epsilon_decay_steps=1000)
    assert config.epsilon(0, noisy=False) == 1.0
    assert config.epsilon(100, noisy=False) == 1.0
    assert config.epsilon(600, noisy=False) == pytest.approx(0.01 + 0.99 * 0.5)
    assert config.epsilon(1100, noisy=False) == pytest.approx(0.01)
    assert config.epsilon(10**6, noisy=False) == pytest.approx(0.01)
    step = tf.Variable(600, dtype=tf.int64)
    from tf_softmoe.agents import policies  # pylint: disable=import-outside-toplevel
    # 600 steps taken: the 601st action, ε(601), as the reference counts.
    assert float(policies.linear_epsilon(config, step, noisy=False)()) == pytest.approx(
        0.01 + 0.99 * 0.499)


@pytest.mark.parametrize("preset", ["rainbow", "der"])
def test_noisy_presets_train_with_zero_epsilon(preset):
    """The reference's full_rainbow_agent uses zero_epsilon when noisy."""
    experiment_config = config_lib.ExperimentConfig.preset(preset)
    config, noisy = experiment_config.agent, experiment_config.network.noisy
    assert noisy and not config.acts_epsilon_greedy(noisy)
    for step in (0, config.min_replay_history, 10**7):
        assert config.epsilon(step, noisy) == 0.0
    from tf_softmoe.agents import policies  # pylint: disable=import-outside-toplevel
    epsilon = policies.linear_epsilon(config, tf.Variable(0, dtype=tf.int64), noisy)
    assert float(epsilon()) == 0.0
    env = catch(0)
    agent = agents.make_agent(*fast_setup(preset), env.time_step_spec(),
                              env.action_spec())
    assert agent.noisy
    assert float(agent.epsilon_greedy()) == 0.0
    kept = agents.AgentConfig.preset(preset, epsilon_with_noise=True)
    assert kept.epsilon(0, noisy) == 1.0
    assert float(policies.linear_epsilon(kept, tf.Variable(0, dtype=tf.int64),
                                         noisy)()) == 1.0
    assert agents.AgentConfig.preset(preset).epsilon_eval == 0.001


@pytest.mark.parametrize("double_q", [False, True])
def test_dqn_loss_by_hand(double_q):
    env = catch(0)
    config, network = fast_setup("dqn", double_q=double_q)
    agent = agents.make_agent(config, network, env.time_step_spec(), env.action_spec())
    for v in agent.target_q_network.variables:
        v.assign(v + tf.random.normal(v.shape, stddev=0.05))  # target ≠ online
    batch = random_batch(env)
    learner = learner_lib.Learner(agent, jit_compile=False)
    transition = agents.batch_to_transition(batch)
    loss_info = agent.loss_on(transition, weights=batch["importance_weights"])
    q = agent.q_network(batch["state"])[0].numpy()
    q_next_target = agent.target_q_network(batch["next_state"])[0].numpy()
    if double_q:
        best = agent.q_network(batch["next_state"])[0].numpy().argmax(1)
        bootstrap = q_next_target[np.arange(32), best]
    else:
        bootstrap = q_next_target.max(1)
    target = batch["reward"] + batch["discount"] * bootstrap
    chosen = q[np.arange(32), batch["action"]]
    per_sample = (target - chosen) ** 2  # the reference's mse_loss: no ½
    np.testing.assert_allclose(loss_info.extra.td_loss, per_sample, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        loss_info.loss, np.mean(per_sample * batch["importance_weights"]), rtol=1e-4)
    assert learner.q_network is agent.q_network


def test_c51_projection_by_hand():
    """Support z = (-1, 0, 1). R = 0.5, γ^n = 1, next probs (0, 1, 0): the
    shifted atom 0 + 0.5 = 0.5 lies halfway between 0 and 1 → (0, .5, .5).
    With a terminal (γ^n = 0) every atom moves to R = 0.5 → (0, .5, .5) too;
    with R = -2 (outside the support) all mass clips to -1 → (1, 0, 0)."""
    support = tf.constant([-1.0, 0.0, 1.0])
    probs = tf.constant([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5], [0.2, 0.3, 0.5]])
    target = rainbow_agent.c51_target(tf.constant([0.5, 0.5, -2.0]),
                                      tf.constant([1.0, 0.0, 0.9]), probs, support)
    np.testing.assert_allclose(target, [[0.0, 0.5, 0.5], [0.0, 0.5, 0.5],
                                        [1.0, 0.0, 0.0]], atol=1e-6)
    # γ^n = 0.5, R = 0: atoms (-.5, 0, .5) → -.5 splits (.5, .5, 0), .5 splits
    # (0, .5, .5): with probs (.2, .3, .5) → (.1, .1+.3+.25, .25).
    target = rainbow_agent.c51_target(tf.constant([0.0]), tf.constant([0.5]),
                                      probs[1:2], support)
    np.testing.assert_allclose(target, [[0.1, 0.65, 0.25]], atol=1e-6)


@pytest.mark.parametrize("double_q", [False, True])
def test_rainbow_loss_by_hand(double_q):
    env = catch(0)
    config, network = fast_setup("rainbow", double_q=double_q, noisy=False)
    agent = agents.make_agent(config, network, env.time_step_spec(), env.action_spec())
    for v in agent.target_q_network.variables:
        v.assign(v + tf.random.normal(v.shape, stddev=0.05))
    batch = random_batch(env)
    loss_info = agent.loss_on(agents.batch_to_transition(batch),
                            weights=batch["importance_weights"])
    support = np.linspace(-1, 1, 21).astype(np.float32)
    softmax = lambda x: np.exp(x - x.max(-1, keepdims=True)) / np.exp(  # noqa: E731
        x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)
    logits = agent.q_network(batch["state"])[0].numpy()
    target_p = softmax(agent.target_q_network(batch["next_state"])[0].numpy())
    selector = (softmax(agent.q_network(batch["next_state"])[0].numpy())
                if double_q else target_p)
    best = (selector * support).sum(-1).argmax(-1)
    next_p = target_p[np.arange(32), best]
    m = np.zeros((32, 21))
    for b in range(32):  # explicit projection, atom by atom
        for j in range(21):
            tz = np.clip(batch["reward"][b] + batch["discount"][b] * support[j], -1, 1)
            pos = (tz + 1) / 0.1
            lo, hi = int(np.floor(pos + 1e-6)), int(np.ceil(pos - 1e-6))
            if lo == hi:
                m[b, lo] += next_p[b, j]
            else:
                m[b, lo] += next_p[b, j] * (hi - pos)
                m[b, hi] += next_p[b, j] * (pos - lo)
    chosen = logits[np.arange(32), batch["action"]]
    log_p = chosen - np.log(np.exp(chosen).sum(-1, keepdims=True))
    per_sample = -(m * log_p).sum(-1)
    np.testing.assert_allclose(loss_info.extra.per_sample_loss, per_sample,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(loss_info.loss,
                               np.mean(per_sample * batch["importance_weights"]),
                               rtol=1e-4)


def test_target_network_syncs_every_period():
    env = catch(0)
    config, network = fast_setup("dqn", update_period=1, target_update_period=3)
    agent = agents.make_agent(config, network, env.time_step_spec(), env.action_spec())
    learner = learner_lib.Learner(agent, jit_compile=False)
    online = agent.q_network.trainable_variables
    target = agent.target_q_network.trainable_variables

    def synced():
        return all(np.allclose(a.numpy(), b.numpy()) for a, b in zip(online, target))

    assert synced()  # initialize() copies the weights
    batch = random_batch(env)
    for update in range(1, 7):
        learner.train(batch)
        assert int(agent.train_step_counter.numpy()) == update
        # TF-Agents' Periodically fires on the update that makes the count a
        # multiple of the period.
        assert synced() == (update % 3 == 0), update


def test_xla_train_step_matches_graph():
    env = catch(0)
    config, network = fast_setup("rainbow", noisy=False)
    batch = random_batch(env)
    results = []
    for jit in (False, True):
        tf.random.set_seed(0)
        agent = agents.make_agent(config, network, env.time_step_spec(),
                                  env.action_spec())
        if results:
            for v, saved in zip(agent.q_network.variables, results[0][1]):
                v.assign(saved)
            agent._update_target()  # pylint: disable=protected-access
        weights = [v.numpy() for v in agent.q_network.variables]
        out = learner_lib.Learner(agent, jit_compile=jit).train(batch)
        results.append((out, weights))
    np.testing.assert_allclose(results[0][0]["per_sample_loss"],
                               results[1][0]["per_sample_loss"], rtol=1e-4, atol=1e-5)


def test_priorities_follow_the_per_sample_loss():
    env = catch(0)
    config, network = fast_setup("rainbow", min_replay_history=64, update_period=100)
    agent = agents.make_agent(config, network, env.time_step_spec(), env.action_spec())
    replay = loop.make_replay(config, env.observation_spec().shape, seed=0)
    learner = learner_lib.Learner(agent, jit_compile=False)
    trainer = loop.Trainer(env, agent, replay, learner, config, seed=0)
    trainer.run(80)
    stats = loop.PhaseStats()
    original_sample = replay.sample
    seen = {}

    def recording_sample(batch_size):
        batch = original_sample(batch_size)
        seen.update(batch)
        return batch

    replay.sample = recording_sample
    original_train = learner.train

    def recording_train(batch):
        out = original_train(batch)
        seen["per_sample_loss"] = out["per_sample_loss"]
        return out

    learner.train = recording_train
    trainer.learn(stats)
    expected = np.sqrt(seen["per_sample_loss"].astype(np.float64) + 1e-10)
    np.testing.assert_allclose(replay.get_priorities(seen["indices"]), expected,
                               rtol=1e-5)


def test_noisy_collect_policy_explores_and_greedy_policy_keeps_only_expert_noise():
    """As the reference: eval_mode turns off the hidden/head noise but never
    reaches the experts; `expert_noise_in_eval=False` turns theirs off too."""
    # Seeded: the experts' noise alone moves the greedy action only where the
    # initial Q-values are close, which depends on the initial weights (one
    # unseeded CI process saw a single action in 40 draws; seeds 0-9 all see
    # two or three).
    tf.keras.utils.set_random_seed(0)
    env = catch(0)
    config, network = fast_setup("rainbow", noisy_sigma0=5.0)
    agent = agents.make_agent(config, network, env.time_step_spec(), env.action_spec())
    step = env.reset()
    greedy = loop.CompiledPolicy(agent.policy)
    collect = loop.CompiledPolicy(agent.collect_policy)
    assert len({collect.action(step) for _ in range(40)}) > 1
    assert len({greedy.action(step) for _ in range(40)}) > 1
    quiet = agents.make_agent(*fast_setup("rainbow", noisy_sigma0=5.0,
                                          expert_noise_in_eval=False),
                               env.time_step_spec(), env.action_spec())
    greedy = loop.CompiledPolicy(quiet.policy)
    assert len({greedy.action(step) for _ in range(20)}) == 1


@pytest.mark.parametrize("preset,steps", [("dqn", 1000), ("rainbow", 1600)])
def test_softmoe_agent_learns_catch(preset, steps):
    """Learning, not just running: near-optimal greedy return on Catch."""
    # Python's `random` too: tf-keras draws the seed of an unseeded
    # initializer from it, so without it the initial weights (and whether 1 600
    # steps suffice) change from process to process.
    tf.keras.utils.set_random_seed(0)
    env, eval_env = catch(0), catch(1)
    config, network = fast_setup(preset)
    agent = agents.make_agent(config, network, env.time_step_spec(), env.action_spec())
    replay = loop.make_replay(config, env.observation_spec().shape, seed=0)
    learner = learner_lib.Learner(agent, jit_compile=False)
    trainer = loop.Trainer(env, agent, replay, learner, config, seed=0)
    stats = trainer.run(steps)
    assert stats.updates == steps - config.min_replay_history + 1
    returns, _ = loop.evaluate(eval_env, agent.policy, num_episodes=30)
    assert np.mean(returns) >= 0.9, returns


def test_inconsistent_agent_settings():
    with pytest.raises(ValueError, match="kind='ppo' is not valid"):
        agents.AgentConfig(kind="ppo")
    with pytest.raises(ValueError, match="Unknown agent preset 'c51'"):
        agents.AgentConfig.preset("c51")
    with pytest.raises(ValueError, match="target_update_period=10 must be a multiple"):
        agents.AgentConfig.preset("dqn", update_period=4, target_update_period=10)
    with pytest.raises(ValueError, match="min_replay_history=8 must be >= batch_size=32"):
        agents.AgentConfig.preset("dqn", min_replay_history=8)
    with pytest.raises(ValueError, match="v_max > v_min"):
        agents.AgentConfig.preset("rainbow", v_min=1.0, v_max=1.0)


def test_adam_uses_the_reference_epsilon_placement():
    env = catch(0)
    agent = agents.make_agent(*fast_setup("dqn"), env.time_step_spec(),
                              env.action_spec())
    optimizer = agent._optimizer  # pylint: disable=protected-access
    assert optimizer.adaptive_epsilon
    assert optimizer.epsilon == pytest.approx(1.5e-4)


@pytest.mark.parametrize("per_sample_noise", [True, False])
def test_rainbow_loss_draws_noise_as_the_reference(per_sample_noise):
    """Online pass on s: a draw per sample (or one, when switched off); the
    target network and the online pass on s': one shared draw, the same."""
    env = catch(0)
    agent = agents.make_agent(*fast_setup("rainbow", per_sample_noise=per_sample_noise),
                               env.time_step_spec(), env.action_spec())
    seen = []
    for net in (agent.q_network, agent.target_q_network):
        original = net.call

        def recording(observation, *args, _original=original, _net=net, **kwargs):
            seen.append((_net, kwargs.get("noise")))
            return _original(observation, *args, **kwargs)

        net.call = recording
    batch = random_batch(env)
    agent.loss_on(agents.batch_to_transition(batch), training=True)
    (online, online_noise), (target, target_noise), (online2, next_noise) = seen
    assert online is online2 is agent.q_network and target is agent.target_q_network
    assert online_noise.features.per_sample == per_sample_noise
    assert online_noise.experts.per_sample == per_sample_noise
    assert not target_noise.features.per_sample and not target_noise.experts.per_sample
    np.testing.assert_array_equal(target_noise.features.seed, next_noise.features.seed)
    np.testing.assert_array_equal(target_noise.experts.seed, next_noise.experts.seed)
    assert not np.array_equal(online_noise.features.seed, target_noise.features.seed)
