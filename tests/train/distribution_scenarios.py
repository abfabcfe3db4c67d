"""The scenarios of test_distribution.py, each run in a fresh Python process
(`python -m tests.train.distribution_scenarios NAME ARGS...`), because the
two logical CPU devices must be configured before TensorFlow initialises its
devices, which any earlier test of a pytest session has done. Each prints
one JSON line of measurements for the test to check."""

import json
import os
import sys

import tf_softmoe  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import tensorflow as tf

REPLICAS = 2


def split_cpu():
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * REPLICAS)


def _max_diff(a, b):
    return float(max(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))
                     for x, y in zip(a, b)))


def train_step_equality():
    """Two updates of the same agent, from the same weights, on the same
    global batches, on one device and mirrored over two: the largest
    differences of the losses, per-sample losses (priorities), TD-error
    statistics and updated weights (online and target), per preset and
    XLA setting."""
    from tests.agents.catch_setup import catch, fast_setup  # pylint: disable=import-outside-toplevel
    from tf_softmoe.agents import make_agent  # pylint: disable=import-outside-toplevel
    from tf_softmoe.train import distribution  # pylint: disable=import-outside-toplevel
    from tf_softmoe.train.learner import Learner  # pylint: disable=import-outside-toplevel

    strategy = distribution.resolve_strategy("mirrored")
    env = catch(0)
    results = {"replicas": strategy.num_replicas_in_sync}
    for preset in ("dqn", "rainbow"):
        # Rainbow without noise: each replica draws its own noise, so noisy
        # steps differ by design; the loss scaling is what is compared.
        # target_update_period=2 updates: the second update syncs the target.
        overrides = dict(batch_size=8, target_update_period=2, update_period=1,
                         min_replay_history=8, max_gradient_norm=10.0)
        if preset == "rainbow":
            overrides.update(noisy=False)
        config, network = fast_setup(preset, **overrides)
        rng = np.random.default_rng(0)
        shape = env.observation_spec().shape
        batches = [{
            "state": rng.integers(0, 256, (8,) + shape, dtype=np.uint8),
            "action": rng.integers(0, 3, 8).astype(np.int32),
            "reward": rng.uniform(-1, 1, 8).astype(np.float32),
            "next_state": rng.integers(0, 256, (8,) + shape, dtype=np.uint8),
            "discount": (rng.uniform(size=8) > 0.2).astype(np.float32) * 0.99,
            "importance_weights": rng.uniform(0.1, 1.0, 8).astype(np.float32),
        } for _ in range(2)]
        for jit in (False, True):
            tf.random.set_seed(0)
            single = make_agent(config, network, env.time_step_spec(), env.action_spec())
            with strategy.scope():
                mirrored = make_agent(config, network, env.time_step_spec(),
                                      env.action_spec())
            for source, target in ((single.q_network, mirrored.q_network),
                                   (single.target_q_network, mirrored.target_q_network)):
                target.set_weights(source.get_weights())
            initial = single.q_network.get_weights()
            outs = {}
            for name, agent, chosen in (("single", single, None),
                                        ("mirrored", mirrored, strategy)):
                learner = Learner(agent, jit_compile=jit, strategy=chosen)
                outs[name] = [learner.train(batch) for batch in batches]
            key = f"{preset}_jit_{str(jit).lower()}"
            one, two = outs["single"], outs["mirrored"]
            results[key] = {
                "loss": _max_diff([o["loss"] for o in one], [o["loss"] for o in two]),
                "priorities": _max_diff([o["per_sample_loss"] for o in one],
                                        [o["per_sample_loss"] for o in two]),
                "td_error": _max_diff(
                    [[o["td_error_mean"], o["td_error_var"]] for o in one],
                    [[o["td_error_mean"], o["td_error_var"]] for o in two]),
                "weights": _max_diff(single.q_network.get_weights(),
                                     mirrored.q_network.get_weights()),
                "target_weights": _max_diff(single.target_q_network.get_weights(),
                                            mirrored.target_q_network.get_weights()),
                "weights_moved": _max_diff(initial, mirrored.q_network.get_weights()),
                "updates": [int(single.train_step_counter.numpy()),
                            int(mirrored.train_step_counter.numpy())],
                "priorities_shape": list(two[0]["per_sample_loss"].shape),
            }
    return results


def resume_across_strategies(root_dir):
    """One iteration of a tiny Catch run under each of none, mirrored,
    mirrored (with XLA, exporting the policy), none in turn, each a new
    `Experiment` on the same run directory that resumes the previous one's
    checkpoint: after each restore, the largest difference of the networks
    and optimizer state from those the previous part ended with, and the
    counters."""
    from tests.train.test_experiment import catch_config  # pylint: disable=import-outside-toplevel
    from tf_softmoe.train import experiment  # pylint: disable=import-outside-toplevel

    results = {"parts": []}
    previous = None
    for part, name in enumerate(("none", "mirrored", "mirrored", "none")):
        config = catch_config(num_iterations=part + 1, steps=44, distribution=name,
                              jit="true" if part == 2 else "false")
        run = experiment.Experiment(config, root_dir, handle_signals=False,
                                    export_on_exit=part == 2)
        report = {"distribution": name, "jit_compile": run.learner.jit_compile,
                  "replicas": run.learner.strategy.num_replicas_in_sync
                  if run.learner.strategy else 1}
        if previous is not None:
            run.restore()
            report["restored_iteration"] = run.iteration
            report["restored_diff"] = _max_diff(previous, _state(run))
        run.run()
        previous = _state(run)
        report["updates"] = int(run.agent.train_step_counter.numpy())
        report["agent_steps"] = int(run.agent.agent_step.numpy())
        report["optimizer_iterations"] = int(run.agent.optimizer.iterations.numpy())
        results["parts"].append(report)
    with open(os.path.join(root_dir, "metrics.csv")) as f:
        results["iterations"] = [line.split(",")[0] for line in f.read().splitlines()[1:]]
    results["exported"] = os.path.isfile(os.path.join(root_dir, "q_network.keras"))
    return results


def _state(run):
    agent = run.agent
    return (agent.q_network.get_weights() + agent.target_q_network.get_weights()
            + [v.numpy() for v in agent.optimizer.variables])


SCENARIOS = {"train_step_equality": train_step_equality,
             "resume_across_strategies": resume_across_strategies}

if __name__ == "__main__":
    split_cpu()
    print(json.dumps(SCENARIOS[sys.argv[1]](*sys.argv[2:])), flush=True)
