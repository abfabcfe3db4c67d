"""End-to-end agent steps per second on Pong, against its two bounds.

For DQN and Rainbow (the presets; update every 4 agent steps) on Pong
(`AtariConfig.preset("dopamine", "Pong")`), with the chosen network
(default Impala + SoftMoE-4, the paper's main one), one run measures:

  e2e          `Trainer.run(--steps)` past the warm-up: collect policy →
               env step → replay add → every 4 steps sample + compiled
               update + priority update. Agent steps per second.
  env_alone    the same environment stepped with uniformly random actions,
               nothing else (auto-reset): the collection bound.
  learner_alone  `Trainer.learn` alone (replay sample, compiled update,
               priority update), one update per 4 agent steps: the learning
               bound, in agent steps per second = 4 / seconds per update.
  policy_alone `CompiledPolicy.action` on one observation (the collect
               policy's network call), for the breakdown.

The goal (docs/performance.md): e2e ≥ 90 % of the slower bound. The
default loop is serial (Dopamine's order), so it can reach at most
1 / (1/env + 1/learner + policy + replay add): `serial_bound` is that sum
from the same run's components, and `e2e_vs_serial` how close the loop
comes to it (the Python glue's cost). `--overlap-updates` times the loop
with `Trainer(overlap_updates=True)`, where each update runs on a
background thread while the next steps are collected (the learner bound
is still measured with every update waited for).

The measurements alternate (env, learner, e2e, …) for `--rounds` rounds so
the machine's load falls on all alike; medians are reported with the
1-minute load average, and `paired_*` is the median over rounds of e2e
divided by the same round's slower bound (less sensitive to the load
drifting between rounds). The warm-up uses a short `min_replay_history`
(`--min-replay`) so that learning starts quickly; replay capacity is
`--capacity` (the 1 M buffer is benchmarked by replay_bench).

Usage:
  python -m benchmarks.e2e_bench [--overlap-updates] [--agents dqn,rainbow] [--encoder impala]
      [--block softmoe4] [--steps 80] [--rounds 3] [--env-steps 2000]
      [--jit_compile auto] [--policy_jit_compile auto] [--json PATH]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_softmoe  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TF)

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.peers import cases as cases_lib  # noqa: E402
from benchmarks.train_step_bench import network_config  # noqa: E402
from tf_softmoe.agents import AgentConfig  # noqa: E402
from tf_softmoe.agents import make_agent  # noqa: E402
from tf_softmoe.envs import AtariConfig  # noqa: E402
from tf_softmoe.envs import make_atari_env  # noqa: E402
from tf_softmoe.train import loop  # noqa: E402
from tf_softmoe.train.learner import Learner  # noqa: E402


class Setup:
    """Environment, agent, replay, learner and trainer for one agent."""

    def __init__(self, agent_name, encoder, block, capacity, min_replay,
                 jit_compile, game, seed, overlap_updates=False,
                 policy_jit_compile="auto"):
        self.agent_config = AgentConfig.preset(
            agent_name, replay_capacity=capacity, min_replay_history=min_replay)
        self.env = make_atari_env(AtariConfig.preset("dopamine", game), seed=seed)
        self.random_env = make_atari_env(AtariConfig.preset("dopamine", game),
                                         seed=seed + 1)
        case = cases_lib.make_case(agent_name, encoder, block,
                                   num_actions=int(self.env.num_actions))
        self.agent = make_agent(self.agent_config, network_config(case),
                                self.env.time_step_spec(), self.env.action_spec())
        self.replay = loop.make_replay(self.agent_config,
                                       self.env.observation_spec().shape, seed=seed)
        self.learner = Learner(self.agent, jit_compile=jit_compile)
        self.trainer = loop.Trainer(self.env, self.agent, self.replay,
                                    self.learner, self.agent_config, seed=seed,
                                    overlap_updates=overlap_updates,
                                    policy_jit_compile=policy_jit_compile)
        self.rng = np.random.default_rng(seed)
        self.random_env.reset()
        self.seed = seed
        self.policy_current = None

    def warm_up(self):
        """Fills the replay to min_replay_history and runs a few updates
        (tracing/compiling the update and the policy)."""
        start = time.perf_counter()
        need = self.agent_config.min_replay_history + 4 * 3
        self.trainer.run(need - self.trainer.agent_step)
        self.policy_current = self.trainer.policy
        return time.perf_counter() - start

    def env_alone(self, steps):
        dtype = self.random_env.action_spec().dtype
        n = int(self.random_env.num_actions)
        actions = self.rng.integers(0, n, steps)
        start = time.perf_counter()
        for action in actions:
            self.random_env.step(np.asarray(action, dtype=dtype))
        return steps / (time.perf_counter() - start)

    def learner_alone(self, updates):
        stats = loop.PhaseStats()
        start = time.perf_counter()
        for _ in range(updates):
            self.trainer.learn(stats)
            self.trainer.finish_update(stats)  # overlap: wait for it
        seconds = (time.perf_counter() - start) / updates
        return self.agent_config.update_period / seconds, seconds

    def policy_alone(self, calls, policy):
        time_step = self.env.current_time_step()
        start = time.perf_counter()
        for _ in range(calls):
            policy.action(time_step)
        return (time.perf_counter() - start) / calls

    def e2e(self, steps, policy):
        self.trainer.policy = policy
        stats = self.trainer.run(steps)
        self.trainer.policy = self.policy_current
        return stats.steps_per_second, stats


def bench_agent(agent_name, args, log):
    setup = Setup(agent_name, args.encoder, args.block, args.capacity,
                  args.min_replay, args.jit_compile, args.game, args.seed,
                  overlap_updates=args.overlap_updates,
                  policy_jit_compile=args.policy_jit_compile)
    warm_s = setup.warm_up()
    log(f"{agent_name}: warm-up {warm_s:.1f}s "
        f"(jit_compile={setup.learner.jit_compile}, "
        f"policy_jit_compile={setup.trainer.policy_jit_compile})")
    updates = max(1, args.steps // setup.agent_config.update_period)
    env_sps, learner_sps, update_s, e2e_sps, policy_s, train_frac = ([] for _ in range(6))
    paired = []
    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        env_sps.append(setup.env_alone(args.env_steps))
        sps, seconds = setup.learner_alone(updates)
        learner_sps.append(sps)
        update_s.append(seconds)
        policy_s.append(setup.policy_alone(args.policy_calls, setup.policy_current))
        sps, stats = setup.e2e(args.steps, setup.policy_current)
        e2e_sps.append(sps)
        train_frac.append(stats.train_seconds / stats.seconds)
        # The same round's bound: robust to the load drifting between rounds.
        slower_now = min(env_sps[-1], learner_sps[-1])
        paired.append(e2e_sps[-1] / slower_now)
        log(f"  round {r + 1}: env {env_sps[-1]:.0f}/s, learner "
            f"{learner_sps[-1]:.2f}/s, e2e {e2e_sps[-1]:.2f}/s, policy "
            f"{policy_s[-1] * 1e3:.1f}ms")
    med = statistics.median
    env_m, learner_m, e2e_m = med(env_sps), med(learner_sps), med(e2e_sps)
    policy_m = med(policy_s)
    slower = min(env_m, learner_m)
    serial = 1.0 / (1.0 / env_m + 1.0 / learner_m + policy_m)
    return {
        "agent": agent_name, "encoder": args.encoder, "block": args.block,
        "jit_compile": str(setup.learner.jit_compile),
        "policy_jit_compile": str(setup.trainer.policy_jit_compile),
        "overlap_updates": args.overlap_updates,
        "e2e_steps_per_s": e2e_m, "env_alone_steps_per_s": env_m,
        "learner_alone_steps_per_s": learner_m, "update_ms": med(update_s) * 1e3,
        "policy_ms": policy_m * 1e3, "slower_bound": slower,
        "bound": "learner" if learner_m < env_m else "env",
        "e2e_vs_slower_bound": e2e_m / slower, "goal": 0.9,
        "met": e2e_m / slower >= 0.9, "serial_bound": serial,
        "e2e_vs_serial": e2e_m / serial, "train_fraction": med(train_frac),
        "paired_e2e_vs_slower_bound": med(paired),
        "warmup_s": warm_s, "rounds": args.rounds, "steps": args.steps,
        "load_before": load_before, "load_after": os.getloadavg()[0],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="dqn,rainbow")
    parser.add_argument("--encoder", default="impala", choices=cases_lib.ENCODERS)
    parser.add_argument("--block", default="softmoe4", choices=cases_lib.BLOCKS)
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--steps", type=int, default=80,
                        help="agent steps per e2e measurement")
    parser.add_argument("--env-steps", type=int, default=2000)
    parser.add_argument("--policy-calls", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-replay", type=int, default=1000)
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--jit_compile", default="auto")
    parser.add_argument("--policy_jit_compile", default="auto",
                        help="XLA for the collect policy: auto, true or false")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overlap-updates", action="store_true",
                        help="Trainer(overlap_updates=True): each update on a "
                        "background thread while the next steps are collected")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    rows = [bench_agent(name, args, print) for name in args.agents.split(",") if name]
    common.print_table(rows, ["agent", "jit_compile", "policy_jit_compile", "overlap_updates", "e2e_steps_per_s",
                              "env_alone_steps_per_s", "learner_alone_steps_per_s",
                              "update_ms", "policy_ms",
                              "bound", "e2e_vs_slower_bound",
                              "paired_e2e_vs_slower_bound", "met",
                              "serial_bound",
                              "e2e_vs_serial", "load_before"])
    common.write_json(args.json, "e2e_bench", rows, settings=vars(args))
    return rows


if __name__ == "__main__":
    main()
