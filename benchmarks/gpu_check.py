"""The accelerator check of issue 6, as one prepared command.

On a machine where TensorFlow sees a GPU (or TPU), runs

  1. `train_step_bench` for tf_softmoe alone (`ours_graph`, `ours_xla`; the
     peers' virtual environments are a CPU comparison) on a few cases: the
     goal case Rainbow-Impala-SoftMoE-4 and the smallest and largest
     networks, so that graph vs XLA (`jit_compile="auto"` picks XLA on an
     accelerator) is measured where the choice matters;
  2. `e2e_bench` on Pong, short: agent steps/s beside the environment alone
     and the learner alone, with `jit_compile="auto"`, for the serial loop
     and with `--overlap-updates` (the update on the device while the host
     acts);
  3. `mirrored_bench`: the learner under `--distribution=mirrored` over
     every visible GPU against the single-device learner: equality of one
     update (loss, priorities, weights) and ms per update. With one GPU it
     runs as a one-replica mirrored check (equality and the strategy's
     overhead; no data parallelism);

each as its own process writing JSON into `--out`, then prints one table
labelled with the device's name. It refuses to run without an accelerator
(the numbers would be CPU numbers under a GPU label).

Usage:
  python -m benchmarks.gpu_check [--out DIR] [--cases rainbow/impala/softmoe4,...]
      [--rounds 5] [--e2e-steps 40] [--quick] [--allow-cpu]
`--allow-cpu` runs it on a CPU, labelled so, to check the script before
spending device time on it.
About 6–9 minutes on one H200 (most of it TensorFlow's and XLA's first-step
compilation); `--quick` halves the rounds.

The device must hold TensorFlow 2.21 with its CUDA libraries
(`pip install 'tensorflow[and-cuda]==2.21.*'` plus this package's
requirements); see docs/performance.md, "GPU".
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CASES = ("rainbow/impala/softmoe4,dqn/nature/flatten1,"
                 "rainbow/impala/flatten4,dqn/impala/softmoe1x4")


def accelerator():
    """(kind, name) of the first accelerator TensorFlow sees, else None."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tf_softmoe  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    for kind in ("GPU", "TPU"):
        devices = tf.config.list_physical_devices(kind)
        if devices:
            details = tf.config.experimental.get_device_details(devices[0])
            return kind, details.get("device_name", devices[0].name)
    return None


def run(name, module, argv, out):
    """Runs `python -m module argv --json out/name.json`; its payload or None."""
    path = os.path.join(out, f"{name}.json")
    command = [sys.executable, "-m", module, *argv, "--json", path]
    print(f"$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO_ROOT, check=False)
    print(f"  {name}: exit {completed.returncode} after "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    if completed.returncode != 0 or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def summary_rows(device, step, *e2e_runs):
    rows = []
    for row in (step or {}).get("rows", []):
        if row.get("impl") in ("ours_graph", "ours_xla") and "median_ms" in row:
            rows.append({"device": device, "measure": f"train step {row['case']}",
                         "variant": row["impl"], "value": row["median_ms"],
                         "unit": "ms", "first_step_s": row.get("first_step_s", "")})
    for row in (r for e2e in e2e_runs for r in (e2e or {}).get("rows", [])):
        loop = "overlapped" if row.get("overlap_updates") else "serial"
        for key, unit in (("e2e_steps_per_s", "steps/s"),
                          ("learner_alone_steps_per_s", "steps/s"),
                          ("env_alone_steps_per_s", "steps/s"),
                          ("update_ms", "ms"), ("policy_ms", "ms"),
                          ("e2e_vs_slower_bound", "ratio")):
            if key in row:
                rows.append({"device": device,
                             "measure": f"e2e {row.get('agent', '')} {loop}",
                             "variant": key, "value": row[key], "unit": unit,
                             "first_step_s": ""})
    return rows


def mirrored_rows(device, mirrored):
    """The table rows of `mirrored_bench`'s payload (none when it failed)."""
    rows = []
    for row in (mirrored or {}).get("rows", []):
        measure = f"mirrored {row['case']} ({row['replicas']} replicas)"
        for key, unit in (("none_median_ms", "ms"), ("mirrored_median_ms", "ms"),
                          ("loss_max_abs_diff", "abs"),
                          ("priorities_max_abs_diff", "abs"),
                          ("weights_max_abs_diff", "abs")):
            rows.append({"device": device, "measure": measure, "variant": key,
                         "value": row[key], "unit": unit, "first_step_s": ""})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "runs", "gpu_check"))
    parser.add_argument("--cases", default=DEFAULT_CASES)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--e2e-steps", type=int, default=40)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run on the CPU anyway, labelled as such (a dry "
                        "run of the script itself)")
    args = parser.parse_args(argv)
    found = accelerator()
    if found is None and args.allow_cpu:
        found = ("CPU", f"CPU only ({os.cpu_count()} cores; --allow-cpu dry run)")
    if found is None:
        print("gpu_check: TensorFlow sees no GPU or TPU here. Install a "
              "TensorFlow build with accelerator support (e.g. "
              "pip install 'tensorflow[and-cuda]==2.21.*') on a machine with "
              "one; for CPU numbers run benchmarks.run_all instead.",
              file=sys.stderr)
        return 2
    kind, device = found
    print(f"gpu_check on {kind}: {device}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    rounds = max(2, args.rounds // 2) if args.quick else args.rounds
    step = run("train_step", "benchmarks.train_step_bench",
               ["--impls", "ours_graph,ours_xla", "--cases", args.cases,
                "--rounds", str(rounds), "--steps", "3", "--warmup", "3"], args.out)
    e2e = run("e2e", "benchmarks.e2e_bench",
              ["--agents", "dqn,rainbow", "--steps", str(args.e2e_steps),
               "--rounds", "2" if args.quick else "3", "--jit_compile", "auto"],
              args.out)
    # Where the update runs on the accelerator and acting on the host,
    # overlapping the two is what `overlap_updates` is for.
    e2e_overlap = run("e2e_overlap", "benchmarks.e2e_bench",
                      ["--agents", "dqn,rainbow", "--steps", str(args.e2e_steps),
                       "--rounds", "2" if args.quick else "3", "--jit_compile", "auto",
                       "--overlap-updates"], args.out)
    mirrored = run("mirrored", "benchmarks.mirrored_bench",
                   ["--rounds", "10" if args.quick else "20"]
                   + (["--cpu-replicas", "2"] if kind == "CPU" else []), args.out)
    sys.path.insert(0, REPO_ROOT)
    from benchmarks import common  # pylint: disable=g-import-not-at-top
    rows = summary_rows(device, step, e2e, e2e_overlap) + mirrored_rows(device, mirrored)
    print()
    common.print_table(rows, ["device", "measure", "variant", "value", "unit",
                              "first_step_s"])
    common.write_json(os.path.join(args.out, "gpu_check.json"), "gpu_check", rows,
                      device=device, kind=kind, settings=vars(args))
    return 0 if None not in (step, e2e, e2e_overlap, mirrored) else 1


if __name__ == "__main__":
    sys.exit(main())
