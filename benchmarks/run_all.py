"""Runs every speed benchmark and prints one summary table of the goals.

Each benchmark runs as its own process (`python -m benchmarks.<name>
--json <out>/<name>.json`), so TensorFlow's settings of one never leak into
another; then this script reads the JSON files and prints, and writes to
`<out>/run_all.json`, where each goal of docs/performance.md stands:

  train_step   Rainbow-Impala-SoftMoE-4 step ≤ 0.8 × the fastest peer
               (train_step_bench; the library as it is and with oneDNN)
  jit_auto     `jit_compile="auto"` picks the faster of graph and XLA per
               network
               (train_step_bench's graph/XLA pairs)
  policy_jit   `policy_jit_compile="auto"` picks the faster of graph and
               XLA for the batch-of-one collect policy (policy_bench)
  e2e          end-to-end ≥ 90 % of the slower bound (e2e_bench, serial
               loop and `--overlap-updates`)
  replay       ≤ 7.2 KB per transition at 1 M (replay_bench)
  eval         evaluation in 100 environments faster than in one (eval_bench,
               DER's 100 games; agent steps/s, steady state)
  startup      import and first-step seconds (startup_bench; no goal)

Usage:
  python -m benchmarks.run_all [--out runs/benchmarks] [--quick]
      [--skip replay_bench,...] [--threads 1] [--setup-peers]
`--quick` shortens every benchmark (fewer rounds, a 100 k replay) for a
smoke run; the numbers are then not the documented ones.
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def commands(args):
    """(name, module, argv) of every benchmark run, with the run's settings;
    `name` keys its JSON and log files (a module may run twice)."""
    step_args = ["--threads", str(args.threads)]
    if args.setup_peers:
        step_args.append("--setup-peers")
    if args.quick:
        e2e_quick = ["--steps", "8", "--rounds", "1", "--min-replay", "200",
                     "--env-steps", "300", "--policy-calls", "5", "--encoder",
                     "nature", "--block", "flatten1", "--capacity", "5000"]
        return [
            ("train_step_bench", "train_step_bench",
             ["--rounds", "2", "--steps", "1", "--warmup", "1",
              "--cases", "dqn/nature/flatten1"] + step_args),
            ("policy_bench", "policy_bench",
             ["--cases", "dqn/nature/flatten1", "--rounds", "1", "--calls", "3"]),
            ("e2e_bench", "e2e_bench", e2e_quick),
            ("e2e_bench_overlap", "e2e_bench", e2e_quick + ["--overlap-updates"]),
            ("replay_bench", "replay_bench", ["--capacity", "100000", "--rounds", "50"]),
            ("eval_bench", "eval_bench",
             ["--conditions", "der_nature_flatten_x1", "--envs", "1,8", "--steps", "200",
              "--rounds", "1"]),
            ("startup_bench", "startup_bench",
             ["--cases", "dqn/nature/flatten1", "--jit", "graph"]),
        ]
    return [
        ("train_step_bench", "train_step_bench", step_args),
        ("policy_bench", "policy_bench", []),
        ("e2e_bench", "e2e_bench", []),
        ("e2e_bench_overlap", "e2e_bench", ["--overlap-updates"]),
        ("replay_bench", "replay_bench", []),
        ("eval_bench", "eval_bench", []),
        ("startup_bench", "startup_bench", []),
    ]


def run_one(name, module, argv, out_dir):
    """Runs benchmarks.<module> with `--json <out_dir>/<name>.json`; its
    payload, or None."""
    path = os.path.join(out_dir, f"{name}.json")
    log_path = os.path.join(out_dir, f"{name}.log")
    start = time.perf_counter()
    with open(log_path, "w") as log:
        done = subprocess.run(
            [sys.executable, "-m", f"benchmarks.{module}", "--json", path, *argv],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    seconds = time.perf_counter() - start
    print(f"{name}: exit {done.returncode} in {seconds:.0f}s (log {log_path})",
          flush=True)
    if done.returncode or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def summarise(results):
    """One row per goal from the benchmarks' JSON payloads."""
    rows = []
    step = results.get("train_step_bench")
    if step and step.get("goal"):
        goal = step["goal"]
        for name in goal["ours"]:
            for kind, peer in (("", goal["fastest_peer"]),
                               ("_cpu", goal["fastest_peer_cpu"])):
                ratio = goal[f"{name}{kind}_ratio"]
                rows.append({
                    "goal": f"train step {name} / fastest peer ({peer}), "
                            f"{'CPU' if kind else 'wall'} ms",
                    "measured": ratio, "target": "<= 0.8",
                    "status": "met" if ratio <= 0.8 else "not met"})
    if step:
        for decision in step.get("jit_compile", []):
            auto = decision.get("auto", "graph")
            over = decision.get("auto_over_best", 1.0)
            rows.append({
                "goal": f"jit auto={auto}, {decision['case']} "
                        f"({decision['kernels']} kernels): its time / the faster's",
                "measured": over, "target": "1",
                "status": "met" if over <= 1.0 else "not met"})
    for row in (results.get("policy_bench") or {}).get("rows", []):
        rows.append({
            "goal": f"policy jit auto={row['auto']}, {row['case']}: its time / the faster's",
            "measured": row["auto_over_best"], "target": "1",
            "status": "met" if row["auto_over_best"] <= 1.0 else "not met"})
    e2e_rows = [r for key in ("e2e_bench", "e2e_bench_overlap")
                for r in (results.get(key) or {}).get("rows", [])]
    for row in e2e_rows:
        loop = "overlapped" if row.get("overlap_updates") else "serial"
        rows.append({
            "goal": f"e2e {row['agent']} ({loop} loop) / slower bound ({row['bound']})",
            "measured": row["e2e_vs_slower_bound"], "target": ">= 0.9",
            "status": "met" if row["met"] else "not met"})
    replay = results.get("replay_bench")
    for row in (replay or {}).get("rows", []):
        rows.append({
            "goal": f"replay bytes/transition ({row['mode']}, {row['capacity']})",
            "measured": row["bytes_per_transition"], "target": "<= 7200",
            "status": "met" if row["bytes_per_transition"] <= 7200 else "not met"})
        rows.append({"goal": f"replay sampling batches/s ({row['mode']})",
                     "measured": row["batches_per_s"], "target": "-",
                     "status": "-"})
    eval_rows = (results.get("eval_bench") or {}).get("rows", [])
    for row in eval_rows:
        if row["envs"] == max(r["envs"] for r in eval_rows) and row["envs"] > 1:
            rows.append({
                "goal": f"evaluation {row['condition']}: {row['envs']} environments' "
                        "steps/s / one's",
                "measured": row["speedup"], "target": "> 1",
                "status": "met" if row["speedup"] > 1 else "not met"})
    startup = results.get("startup_bench")
    for row in (startup or {}).get("rows", []):
        if "first_step_s" in row:
            rows.append({
                "goal": f"startup {row['case']} {row['jit']} {row['variant']}: "
                        "import s / first step s",
                "measured": f"{row['import_s']:.1f} / {row['first_step_s']:.1f}",
                "target": "-", "status": "-"})
        elif "process_s" in row:
            rows.append({"goal": f"startup {row['case']} (s)",
                         "measured": row["process_s"], "target": "-",
                         "status": "-"})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "runs", "benchmarks"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip", default="")
    parser.add_argument("--threads", type=int, default=1,
                        help="train_step_bench threads per implementation (1: "
                        "the documented comparison; 0: each library's default)")
    parser.add_argument("--setup-peers", action="store_true")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    results = {}
    for name, module, bench_argv in commands(args):
        if name in skip:
            continue
        payload = run_one(name, module, bench_argv, args.out)
        if payload is not None:
            results[name] = payload
    sys.path.insert(0, REPO_ROOT)
    from benchmarks import common  # pylint: disable=g-import-not-at-top
    rows = summarise(results)
    print()
    common.print_table(rows, ["goal", "measured", "target", "status"])
    common.write_json(os.path.join(args.out, "run_all.json"), "run_all", rows,
                      ran=sorted(results), settings=vars(args))
    return rows


if __name__ == "__main__":
    main()
