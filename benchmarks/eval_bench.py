"""Evaluation speed: agent steps/s of `loop.evaluate` in 1, 10 and 100
environments at once (`ScheduleConfig.eval_envs`, `tfsm-evaluate --num_envs`).

DER scores a run on 100 evaluation games (about 520 000 agent steps on
RoadRunner once it plays well); the reference plays them in 100 environments
with one batched action selection per step. For each condition (a DER flag
file) the evaluation policy (ε = 0.001, the experts noisy as in the
reference, XLA as `policy_jit_compile="auto"` picks) acts in the real Atari
game, the environments seeded by `loop.environment_seeds`. Rounds are
interleaved: in each, every environment count plays `--steps` agent steps
(games unfinished at the cap are dropped, as in an evaluation with
`eval_max_steps`), after the batch sizes it uses were traced and compiled.

  steps_per_s   agent steps per second over the round, from the end of its
                first step of all environments (the games' starts, 0-29
                no-ops each, are left out: a real evaluation makes one per
                game however many environments play them) to its end:
                environment steps, policy calls and the loop
  speedup       over one environment, same round, median over the rounds

This is the steady state, every environment still playing. At the end of a
real evaluation the environments finish one by one and the batch shrinks,
so a whole 100-game evaluation gains less than the 100-environment figure.
The network is untrained (the speed does not depend on the weights).

Usage:
  python -m benchmarks.eval_bench [--conditions der_nature_flatten_x1,der_nature_softmoe4]
      [--game RoadRunner] [--envs 1,10,100] [--steps 2000] [--rounds 3] [--json PATH]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_softmoe  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TF)

import numpy as np  # noqa: E402
from tf_agents.trajectories import time_step as ts  # noqa: E402

from benchmarks import common  # noqa: E402
from tf_softmoe.agents import make_agent  # noqa: E402
from tf_softmoe.config import ExperimentConfig  # noqa: E402
from tf_softmoe.runs import conditions  # noqa: E402
from tf_softmoe.train import experiment  # noqa: E402
from tf_softmoe.train import loop  # noqa: E402
from tf_softmoe.train import resolve_policy_jit_compile  # noqa: E402


def bench_condition(condition, game, env_counts, steps, rounds):
    config = ExperimentConfig.from_flagfile(conditions.find_flagfile(condition), game=game)
    probe = experiment.make_environment(config, 0)
    agent = make_agent(config.agent, config.network, probe.time_step_spec(),
                       probe.action_spec())
    probe.close()
    jit = resolve_policy_jit_compile(config.schedule.policy_jit_compile, config.network)
    policy = loop.CompiledPolicy(experiment.eval_policy(agent, config.agent.epsilon_eval),
                                 jit_compile=jit)
    envs = {count: [experiment.make_environment(config, seed)
                    for seed in loop.environment_seeds(0, count)]
            for count in env_counts}
    for count in env_counts:  # trace and compile every batch size first
        loop.evaluate(envs[count], policy, 10 * count, max_steps=2 * count)
        for size in loop.batch_sizes(count):
            policy.actions(_batch(envs[count][0], size), max_batch_size=count)
    rates = {count: [] for count in env_counts}
    for _ in range(rounds):
        for count in env_counts:
            marks = []  # (time, steps) after each round of steps
            loop.evaluate(envs[count], policy, 1_000 * count, max_steps=steps,
                          on_progress=lambda r, l, n: marks.append((time.perf_counter(), n)))
            (start, first), (end, last) = marks[0], marks[-1]
            rates[count].append((last - first) / (end - start))
    for group in envs.values():
        for env in group:
            env.close()
    base = rates[env_counts[0]]
    return [{"condition": condition, "game": game, "envs": count,
             "policy": "xla" if jit else "graph",
             "steps_per_s": statistics.median(rates[count]),
             "speedup": statistics.median(r / b for r, b in zip(rates[count], base)),
             "rounds": rounds} for count in env_counts]


def _batch(env, size):
    """`size` copies of the env's first time step, batched."""
    step = env.reset()
    return ts.TimeStep(*(np.stack([np.asarray(x)] * size) for x in step))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conditions", default="der_nature_flatten_x1,der_nature_softmoe4")
    parser.add_argument("--game", default="RoadRunner")
    parser.add_argument("--envs", default="1,10,100",
                        help="comma-separated environment counts; the first is the base")
    parser.add_argument("--steps", type=int, default=2000,
                        help="agent steps per environment count and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    env_counts = [int(n) for n in args.envs.split(",")]
    load_before = os.getloadavg()[0]
    rows = []
    for condition in args.conditions.split(","):
        rows += bench_condition(condition, args.game, env_counts, args.steps, args.rounds)
        for row in rows[-len(env_counts):]:
            print(f"{condition} {row['envs']} envs: {row['steps_per_s']:.0f} steps/s "
                  f"(x{row['speedup']:.2f})", flush=True)
    print()
    common.print_table(rows, ["condition", "game", "envs", "policy", "steps_per_s",
                              "speedup", "rounds"])
    common.write_json(args.json, "eval_bench", rows, settings=vars(args),
                      load_before=load_before, load_after=os.getloadavg()[0])
    return rows


if __name__ == "__main__":
    main()
