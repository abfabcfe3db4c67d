"""tf_softmoe's train step as a protocol worker, for variants that need a
process of their own.

Some settings only take effect before TensorFlow is imported (e.g.
`TF_ENABLE_ONEDNN_OPTS`, which switches TensorFlow's CPU kernels to oneDNN),
so `benchmarks.train_step_bench` times such variants of tf_softmoe in a
subprocess of tf_softmoe's own venv, interleaved with everything else, via
the line protocol of `benchmarks.peers.protocol`.

  python -m benchmarks.peers.ours_worker --jit {graph,xla}
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_softmoe  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TF)

import tensorflow as tf  # noqa: E402

from benchmarks import train_step_bench  # noqa: E402
from benchmarks.peers import protocol  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jit", choices=("graph", "xla"), default="graph")
    args = parser.parse_args()
    train_step_bench.set_tf_threads(protocol.requested_threads())
    info = {"peer": f"tf_softmoe ({args.jit})", "tensorflow": tf.__version__,
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "cpu_count": os.cpu_count(),
            "threads": protocol.requested_threads() or "default"}
    protocol.serve(
        lambda case: train_step_bench.build_ours(case, args.jit == "xla"), info)


if __name__ == "__main__":
    main()
