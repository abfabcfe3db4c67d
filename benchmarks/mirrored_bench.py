"""The learner under `--distribution=mirrored` against the single-device
learner: equality of one update and the time per update.

For each case (agent/encoder/block, as `train_step_bench`), builds the agent
twice from the same weights, once plainly and once in a MirroredStrategy's
scope over every visible GPU, runs the same global batch (32 by default)
through both learners and reports the largest differences of the loss, the
per-sample losses (priorities) and the updated weights, then the median
milliseconds per update of each. Rainbow runs without noise for the
comparison (each replica draws its own noise, so noisy updates differ by
design). With one GPU it is a one-replica mirrored check (the strategy's
overhead, and the equality); `--cpu-replicas N` splits the CPU into N
logical devices instead (a dry run of the script, or a CPU check).

Usage:
  python -m benchmarks.mirrored_bench [--cases dqn/nature/softmoe4,...]
      [--batch-size 32] [--rounds 20] [--cpu-replicas 0] [--json PATH]
"""

import argparse
import os
import statistics
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CASES = "rainbow/impala/softmoe4,dqn/nature/softmoe4"


def _max_diff(a, b):
    import numpy as np  # pylint: disable=g-import-not-at-top
    return float(max(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))
                     for x, y in zip(a, b)))


def _config(case, batch_size):
    from tf_softmoe import config as config_lib  # pylint: disable=g-import-not-at-top
    agent, encoder, block = case.split("/")
    experts = int(block[len("softmoe"):] or 1) if block.startswith("softmoe") else None
    fields = dict(encoder=encoder, batch_size=batch_size,
                  penultimate="softmoe" if experts else block.rstrip("0123456789"))
    if experts:
        fields["num_experts"] = experts
    if agent == "rainbow":
        fields["noisy"] = False
    return config_lib.ExperimentConfig.preset(agent, game="Pong", **fields)


def measure(case, strategy, batch_size, rounds, jit_compile):
    """One row: equality figures and ms per update, none vs mirrored."""
    import numpy as np  # pylint: disable=g-import-not-at-top
    from tf_agents.specs import array_spec  # pylint: disable=g-import-not-at-top
    from tf_agents.trajectories import time_step as ts  # pylint: disable=g-import-not-at-top
    from tf_softmoe.agents import make_agent  # pylint: disable=g-import-not-at-top
    from tf_softmoe.train.learner import Learner  # pylint: disable=g-import-not-at-top
    config = _config(case, batch_size)
    observation = array_spec.BoundedArraySpec((84, 84, 4), np.uint8, 0, 255)
    action = array_spec.BoundedArraySpec((), np.int64, 0, 5)
    spec = ts.time_step_spec(observation)
    single = make_agent(config.agent, config.network, spec, action)
    with strategy.scope():
        mirrored = make_agent(config.agent, config.network, spec, action)
    mirrored.q_network.set_weights(single.q_network.get_weights())
    mirrored.target_q_network.set_weights(single.target_q_network.get_weights())
    rng = np.random.default_rng(0)
    batch = {"state": rng.integers(0, 256, (batch_size, 84, 84, 4), dtype=np.uint8),
             "action": rng.integers(0, 6, batch_size).astype(np.int32),
             "reward": rng.uniform(-1, 1, batch_size).astype(np.float32),
             "next_state": rng.integers(0, 256, (batch_size, 84, 84, 4), dtype=np.uint8),
             "discount": np.full(batch_size, 0.99, np.float32),
             "importance_weights": rng.uniform(0.1, 1, batch_size).astype(np.float32)}
    learners = {"none": Learner(single, jit_compile=jit_compile),
                "mirrored": Learner(mirrored, jit_compile=jit_compile, strategy=strategy)}
    first = {name: learner.train(batch) for name, learner in learners.items()}
    row = {"case": case, "replicas": strategy.num_replicas_in_sync,
           "batch_size": batch_size, "jit_compile": learners["none"].jit_compile,
           "loss_max_abs_diff": abs(float(first["none"]["loss"] - first["mirrored"]["loss"])),
           "priorities_max_abs_diff": _max_diff([first["none"]["per_sample_loss"]],
                                                [first["mirrored"]["per_sample_loss"]]),
           "weights_max_abs_diff": _max_diff(single.q_network.get_weights(),
                                             mirrored.q_network.get_weights())}
    for name, learner in learners.items():
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            learner.train(batch)
            times.append((time.perf_counter() - start) * 1e3)
        row[f"{name}_median_ms"] = statistics.median(times)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=DEFAULT_CASES)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--jit_compile", default="auto")
    parser.add_argument("--cpu-replicas", type=int, default=0,
                        help="split the CPU into this many logical devices and "
                        "mirror over them (no GPU needed)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tf_softmoe  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    if args.cpu_replicas:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_replicas)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    else:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        if not devices:
            print("mirrored_bench: no GPU; pass --cpu-replicas N to mirror over "
                  "logical CPU devices.", file=sys.stderr)
            return 2
    if len(devices) == 1:
        print("mirrored_bench: one device: a one-replica mirrored check (equality "
              "and the strategy's overhead; no data parallelism).", flush=True)
    from tf_softmoe.train import distribution  # pylint: disable=g-import-not-at-top
    strategy = distribution.resolve_strategy("mirrored", devices=devices)
    rows = [measure(case, strategy, args.batch_size, args.rounds, args.jit_compile)
            for case in args.cases.split(",")]
    sys.path.insert(0, REPO_ROOT)
    from benchmarks import common  # pylint: disable=g-import-not-at-top
    common.print_table(rows, list(rows[0]))
    if args.json:
        common.write_json(args.json, "mirrored_bench", rows, devices=devices,
                          settings=vars(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
