"""The cost of per-sample noise in a Rainbow train step.

The reference draws the noise of the training loss's online pass per sample
(a key per sample, `AgentConfig.per_sample_noise=True`, the default). A
noisy layer then computes x_b μ + ((x_b ⊙ ε_in,b) σ) ⊙ ε_out,b for every
sample b: a second matmul over all rows, where one draw for the batch can
form the noisy matrix once (`per_sample_noise=False`). Timed: one full
train step (`Learner.train`, graph or XLA as `jit_compile="auto"` picks)
of the Rainbow preset, both settings alternated in one process, for

  rainbow/impala/softmoe4   Impala encoder, SoftMoE-4 (noisy experts + head)
  rainbow/nature/flatten1   Nature encoder, flatten ×1 (noisy 7744→512 + head)
  rainbow/nature/softmoe4   Nature encoder, SoftMoE-4

Usage: python -m benchmarks.noise_sampling_bench [--steps 5] [--alternations 3]
           [--cases rainbow/impala/softmoe4,...] [--json PATH]
"""

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_softmoe  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TF)

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks import train_step_bench  # noqa: E402
from benchmarks.peers import cases as cases_lib  # noqa: E402
from benchmarks.peers import protocol  # noqa: E402
from tf_softmoe.agents import AgentConfig  # noqa: E402
from tf_softmoe.agents import make_agent  # noqa: E402
from tf_softmoe.train.learner import Learner  # noqa: E402

DEFAULT_CASES = "rainbow/impala/softmoe4,rainbow/nature/flatten1,rainbow/nature/softmoe4"
SETTINGS = {"per_sample": True, "shared": False}


def build_step(case, per_sample_noise):
    """One compiled Rainbow train step on a synthetic batch."""
    time_step_spec, action_spec = train_step_bench.specs(case)
    agent = make_agent(AgentConfig.preset(case["agent"], per_sample_noise=per_sample_noise),
                       train_step_bench.network_config(case), time_step_spec, action_spec)
    learner = Learner(agent)
    batch = cases_lib.synthetic_batch(case, 0, np)
    step = lambda: learner.train(batch)  # noqa: E731
    step()
    return step, learner.jit_compile


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="steps per timing round")
    parser.add_argument("--alternations", type=int, default=3)
    parser.add_argument("--cases", default=DEFAULT_CASES)
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra/inter-op threads (0: default)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    train_step_bench.set_tf_threads(args.threads)
    rows = []
    for case in cases_lib.parse_cases(args.cases):
        steps, jit = {}, None
        for name, per_sample in SETTINGS.items():
            steps[name], jit = build_step(case, per_sample)
        samples = {name: ([], []) for name in steps}
        for _ in range(args.alternations):
            for name, step in steps.items():
                wall, cpu = protocol.timed_steps(step, args.steps)
                samples[name][0].extend(wall)
                samples[name][1].extend(cpu)
        row = {"case": cases_lib.case_key(case), "jit_compile": str(jit)}
        for name, (wall, cpu) in samples.items():
            row[f"{name}_ms"] = statistics.median(wall)
            row[f"{name}_cpu_ms"] = statistics.median(cpu)
        row["per_sample_over_shared"] = row["per_sample_ms"] / row["shared_ms"]
        row["cpu_ratio"] = row["per_sample_cpu_ms"] / row["shared_cpu_ms"]
        row["load"] = os.getloadavg()[0]
        rows.append(row)
        print(row, flush=True)
        steps.clear()
    common.print_table(rows, ["case", "jit_compile", "per_sample_ms", "shared_ms",
                              "per_sample_cpu_ms", "shared_cpu_ms",
                              "per_sample_over_shared", "cpu_ratio", "load"])
    common.write_json(args.json, "noise_sampling_bench", rows, settings=vars(args))
    return rows


if __name__ == "__main__":
    main()
