"""Acting speed: one collect-policy call (a batch of one observation).

Between two updates the loop makes `update_period` (4) policy calls, so
their cost is what keeps the serial loop below the learner bound
(e2e_bench). For each network (`agent/encoder/block`, as train_step_bench),
in one process, interleaved round by round:

  graph_ms   `CompiledPolicy(collect_policy, jit_compile=False)`
  xla_ms     the same compiled with XLA
  auto       what `resolve_policy_jit_compile("auto", network)` picks, and
             `auto_over_best` its time over the faster of the two
  function_call_ms  the auto choice called as a `tf.function` (its public
             call, which re-binds the arguments every time) instead of
             `CompiledPolicy`'s flat call on the concrete function:
             `call_overhead_ms` is the difference

Times are medians over `--rounds` rounds of `--calls` calls on a fixed
random 84×84×4 observation, after warm-up; the collect policy (ε-greedy
at the start of its schedule, noisy layers drawing fresh noise for
Rainbow) is what the loop runs.

Usage:
  python -m benchmarks.policy_bench [--cases 'dqn/*/*,rainbow/*/*']
      [--rounds 7] [--calls 15] [--json PATH]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_softmoe  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TF)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tf_agents.trajectories import time_step as ts  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.peers import cases as cases_lib  # noqa: E402
from benchmarks.train_step_bench import network_config  # noqa: E402
from benchmarks.train_step_bench import specs  # noqa: E402
from tf_softmoe.agents import AgentConfig  # noqa: E402
from tf_softmoe.agents import make_agent  # noqa: E402
from tf_softmoe.train import loop  # noqa: E402
from tf_softmoe.train import resolve_policy_jit_compile  # noqa: E402


def function_call(policy, jit_compile):
    """`time_step -> action` through the public `tf.function` call."""
    spec = policy.time_step_spec
    fields = (spec.step_type, spec.reward, spec.discount, spec.observation)

    def action(step_type, reward, discount, observation):
        return policy.action(ts.TimeStep(step_type, reward, discount,
                                         observation)).action

    function = tf.function(action, autograph=False, jit_compile=jit_compile,
                           input_signature=[tf.TensorSpec((1,) + tuple(s.shape), s.dtype)
                                            for s in fields])
    return lambda step: int(function(*(np.asarray(x)[None] for x in step)).numpy()[0])


def bench_case(case, rounds, calls):
    time_step_spec, action_spec = specs(case)
    config = network_config(case)
    agent = make_agent(AgentConfig.preset(case["agent"]), config, time_step_spec,
                       action_spec)
    auto = resolve_policy_jit_compile("auto", agent.q_network.config)
    observation = np.random.default_rng(0).integers(0, 256, (84, 84, 4), dtype=np.uint8)
    step = ts.TimeStep(np.int32(1), np.float32(0.0), np.float32(1.0), observation)
    variants = {
        "graph": loop.CompiledPolicy(agent.collect_policy, seed=0).action,
        "xla": loop.CompiledPolicy(agent.collect_policy, seed=0, jit_compile=True).action,
        "function_call": function_call(agent.collect_policy, auto),
    }
    for act in variants.values():
        for _ in range(5):
            act(step)
    samples = {name: [] for name in variants}
    for _ in range(rounds):
        for name, act in variants.items():
            start = time.perf_counter()
            for _ in range(calls):
                act(step)
            samples[name].append((time.perf_counter() - start) / calls * 1e3)
    ms = {name: statistics.median(values) for name, values in samples.items()}
    chosen = ms["xla"] if auto else ms["graph"]
    return {
        "case": cases_lib.case_key(case), "graph_ms": ms["graph"], "xla_ms": ms["xla"],
        "xla_over_graph": ms["xla"] / ms["graph"], "auto": "xla" if auto else "graph",
        "auto_over_best": chosen / min(ms["graph"], ms["xla"]),
        "function_call_ms": ms["function_call"],
        "call_overhead_ms": ms["function_call"] - chosen,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="dqn/*/*,rainbow/*/*",
                        help="comma-separated agent/encoder/block (* = all)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    rows = []
    for case in cases_lib.parse_cases(args.cases):
        rows.append(bench_case(case, args.rounds, args.calls))
        row = rows[-1]
        print(f"{row['case']}: graph {row['graph_ms']:.2f} ms, XLA "
              f"{row['xla_ms']:.2f} ms, auto={row['auto']}", flush=True)
    print()
    common.print_table(rows, ["case", "graph_ms", "xla_ms", "xla_over_graph", "auto",
                              "auto_over_best", "function_call_ms", "call_overhead_ms"])
    common.write_json(args.json, "policy_bench", rows, settings=vars(args),
                      load_before=load_before, load_after=os.getloadavg()[0])
    return rows


if __name__ == "__main__":
    main()
