"""The Impala encoder's convolutions one by one: TensorFlow (oneDNN) beside PyTorch.

Two thirds to three quarters of the Rainbow-Impala-SoftMoE-4 train step are
these convolutions (docs/performance.md, "Where the time goes"); this
benchmark shows how each of them runs in tf_softmoe's stack and in the
PyTorch peer's, on the same machine, so the step's distance to its peers can
be split into the kernels both call and everything else.

For each distinct conv shape of the encoder (batch 32, 3×3 SAME, NHWC here)
it times one forward convolution, one filter gradient and one input gradient
(median over `--rounds` calls, each running `--repeats` convolutions with
distinct operands one after the other, so call overhead and op concurrency do
not count). Each side runs in a process of its own (TensorFlow's with a
one-thread inter-op pool, for that reason). The `per_step` rows add them up as the step runs them:
`--forward-passes` forwards (3 for Rainbow with double-Q: online s, online s′,
target s′), one filter gradient for every conv and one input gradient for
every conv but the first (its input is the observation).

PyTorch runs in the peer venv `benchmarks.train_step_bench --setup-peers`
makes, NCHW (what the peer's network uses) and channels-last; without that
venv only tf_softmoe's rows are printed.

Usage:
  python -m benchmarks.conv_bench [--threads N] [--rounds 15] [--repeats 10]
      [--forward-passes 3] [--impls ours,torch] [--json PATH]
"""

import argparse
import json
import os
import subprocess
import sys

from benchmarks import common
from benchmarks.peers import conv_layers
from benchmarks.peers import setup_envs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("forward_ms", "filter_grad_ms", "input_grad_ms")


def worker_rows(name, python, module, request):
    """Rows from a worker process (`module` run by `python`), and its info."""
    done = subprocess.run([python, "-m", module], input=json.dumps(request) + "\n",
                          capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {name} conv worker failed:\n" + done.stderr[-2000:])
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return answer.pop("rows"), answer


def add_flops(rows, batch):
    shapes = {name: (size, cin, cout)
              for name, size, cin, cout, _ in conv_layers.impala_layers()}
    for row in rows:
        flop = conv_layers.gflop(batch, *shapes[row["layer"]])
        row["gflop"] = flop
        for kind in KINDS:
            row[kind.replace("_ms", "_gflops")] = flop / row[kind] * 1e3


def per_step(rows, forward_passes):
    """One row per implementation: the step's convolution time, as it runs
    them (the first conv's input gradient is never computed)."""
    first = conv_layers.impala_layers()[0][0]
    totals = {}
    for row in rows:
        total = totals.setdefault(row["impl"], {
            "impl": row["impl"], "layer": "per_step", "forward_ms": 0.0,
            "filter_grad_ms": 0.0, "input_grad_ms": 0.0})
        total["forward_ms"] += forward_passes * row["count"] * row["forward_ms"]
        total["filter_grad_ms"] += row["count"] * row["filter_grad_ms"]
        if row["layer"] != first:
            total["input_grad_ms"] += row["count"] * row["input_grad_ms"]
    for total in totals.values():
        total["total_ms"] = sum(total[k] for k in KINDS)
    return list(totals.values())


def run(args, log=print):
    impls = [s for s in args.impls.split(",") if s]
    unknown = sorted(set(impls) - {"ours", "torch"})
    if unknown:
        raise ValueError(f"Unknown implementation(s) {unknown}; choose from ours, torch.")
    request = {"batch": args.batch_size, "repeats": args.repeats,
               "rounds": args.rounds, "threads": args.threads,
               "layouts": ["nchw", "channels_last"]}
    rows, info = [], {}
    if "ours" in impls:
        part, info["ours"] = worker_rows("tf_softmoe", sys.executable,
                                         "benchmarks.peers.tf_convs", request)
        rows += part
    if "torch" in impls:
        if setup_envs.is_ready(args.peer_root, "torch"):
            part, info["torch"] = worker_rows(
                "PyTorch", setup_envs.python_of(args.peer_root, "torch"),
                "benchmarks.peers.torch_convs", request)
            rows += part
        else:
            log(f"skipping torch: {args.peer_root}/torch is not set up (run "
                "python -m benchmarks.train_step_bench --setup-peers once)")
    add_flops(rows, args.batch_size)
    return rows, per_step(rows, args.forward_passes), info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impls", default="ours,torch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--forward-passes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for every implementation (0: defaults)")
    parser.add_argument("--peer-root", default=setup_envs.DEFAULT_ROOT)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    rows, steps, info = run(args)
    common.print_table(rows, ["impl", "layer", "count", "gflop", "forward_ms",
                              "filter_grad_ms", "input_grad_ms", "forward_gflops",
                              "filter_grad_gflops", "input_grad_gflops"])
    print()
    common.print_table(steps, ["impl", "layer", "forward_ms", "filter_grad_ms",
                               "input_grad_ms", "total_ms"])
    common.write_json(args.json, "conv_bench", rows, per_step=steps, peers=info,
                      settings=vars(args), load_before=load_before,
                      load_after=os.getloadavg()[0])
    return rows, steps


if __name__ == "__main__":
    main()
