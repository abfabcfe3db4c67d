"""Overhead of the Ray sweep backend against the local one, on one tiny grid.

The same grid (a tiny DQN on Catch, `--runs` seeds, `--iterations` x
`--steps` agent steps each) runs twice into fresh sweep roots: with
`LocalBackend(workers=--parallel)` and with `RayBackend` on a local Ray
instance of `--parallel` CPUs (one CPU per run). Measured:

  ray_init_s     `ray.init` of the local instance (with --dashboard: with
                 Ray's dashboard).
  sweep_s        wall time of `Scheduler.run` (Ray: after ray.init).
  per_run_s      mean wall time of a run, submission to end (`Outcome`).
  overhead_s     per_run_s minus the local backend's: what a Ray task adds
                 to a run (worker start, task dispatch, polling).

The runs themselves (TensorFlow start-up, training) are the same in both,
so on a loaded machine compare the overhead with the per-run time's noise
(run with --repeats > 1).

Usage:
  python -m benchmarks.sweep_backend_bench [--runs 2] [--parallel 2]
      [--iterations 2] [--steps 100] [--repeats 1] [--dashboard] [--json PATH]
"""

import argparse
import statistics
import tempfile
import time

from benchmarks import common
from tf_softmoe.runs import conditions
from tf_softmoe.runs import sweep
from tf_softmoe.runs.backends import local
from tf_softmoe.runs.backends import ray_backend

CONDITION = "dqn_nature_flatten_x1"


def tiny_flags(iterations, steps):
    return (f"--num_iterations={iterations}", f"--steps_per_iteration={steps}",
            f"--min_replay_history={steps // 2}", f"--replay_capacity={10 * steps}",
            "--target_update_period=64", "--eval_episodes=0", "--jit_compile=false")


def run_grid(make_backend, runs, iterations, steps):
    """(sweep wall seconds, per-run seconds, all finished) of one grid."""
    with tempfile.TemporaryDirectory(prefix="sweep_bench_") as root:
        units = sweep.plan_runs(root, [conditions.find_flagfile(CONDITION)], ["catch"],
                                list(range(runs)), tiny_flags(iterations, steps))
        backend = make_backend(root)
        start = time.perf_counter()
        with backend:
            outcomes = sweep.Scheduler(units, backend, poll_seconds=0.2,
                                       out=lambda _: None).run(handle_signals=False)
        wall = time.perf_counter() - start
        return wall, [o.seconds for o in outcomes], all(o.finished for o in outcomes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--dashboard", action="store_true")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    ray = ray_backend.import_ray()
    rows = []
    for repeat in range(args.repeats):
        wall, per_run, ok = run_grid(lambda root: local.LocalBackend(workers=args.parallel),
                                     args.runs, args.iterations, args.steps)
        rows.append({"backend": "local", "repeat": repeat, "ray_init_s": 0.0,
                     "sweep_s": wall, "per_run_s": statistics.mean(per_run),
                     "finished": ok})
        start = time.perf_counter()
        ray.init(num_cpus=args.parallel, include_dashboard=args.dashboard,
                 logging_level="WARNING")
        init_seconds = time.perf_counter() - start
        try:
            wall, per_run, ok = run_grid(
                lambda root: ray_backend.RayBackend(root), args.runs, args.iterations,
                args.steps)
        finally:
            ray.shutdown()
        rows.append({"backend": "ray", "repeat": repeat, "ray_init_s": init_seconds,
                     "sweep_s": wall, "per_run_s": statistics.mean(per_run),
                     "finished": ok})
    local_per_run = statistics.mean(r["per_run_s"] for r in rows if r["backend"] == "local")
    for row in rows:
        row["overhead_s"] = row["per_run_s"] - local_per_run
    common.print_table(rows, ["backend", "repeat", "ray_init_s", "sweep_s", "per_run_s",
                              "overhead_s", "finished"])
    summary = {
        "ray_init_s": statistics.mean(r["ray_init_s"] for r in rows if r["backend"] == "ray"),
        "per_run_overhead_s": statistics.mean(
            r["overhead_s"] for r in rows if r["backend"] == "ray"),
        "local_per_run_s": local_per_run}
    print("summary:", summary)
    common.write_json(args.json, "sweep_backend_bench", rows, summary=summary,
                      config=vars(args))
    return 0 if all(r["finished"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
