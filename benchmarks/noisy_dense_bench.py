"""Two ways to compute a factorised-noise linear layer, timed side by side.

    materialised  W = μ + σ ⊙ (ε_in ε_outᵀ);  y = x W + b
    factorised    y = x μ + ((x ⊙ ε_in) σ) ⊙ ε_out + b

Same output (and same distribution of the noise); the first makes three
passes over a [d, h] temporary and one matmul, the second two matmuls and
no temporary. Which is cheaper depends on the rows of x: one observation
(action selection) or a training batch. Timed: forward only (`policy`, as
the collect policy runs it) and forward + gradients w.r.t. μ and σ
(`train`), each in one `tf.function` (graph mode), for the noisy layers of
the benchmark's networks:

  nature_flatten   d 7744 (11·11·64) → h 512    (Rainbow-Nature-flatten ×1)
  impala_flatten4  d 3872 (11·11·32) → h 2048   (Rainbow-Impala-flatten ×4)
  impala_head      d 3872 → 306 (6 actions × 51 atoms), the SoftMoE head
  toksum4_tokens   d 32 → h 2048 on 121 tokens per sample (tokenized_sum ×4)

The library's `NoisyDense` takes the factorised form up to
`noisy_dense.FACTORISED_MAX_ROWS` (32) input rows and the materialised one
beyond, from this benchmark's numbers (docs/performance.md).

Usage: python -m benchmarks.noisy_dense_bench [--rounds 20] [--json PATH]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_softmoe  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TF)

import tensorflow as tf  # noqa: E402

from benchmarks import common  # noqa: E402

SHAPES = {  # name: (rows per sample, d, h)
    "nature_flatten": (1, 7744, 512),
    "impala_flatten4": (1, 3872, 2048),
    "impala_head": (1, 3872, 306),
    "toksum4_tokens": (121, 32, 2048),
}


def _noise(n):
    eps = tf.random.normal([n])
    return tf.sign(eps) * tf.sqrt(tf.abs(eps))


def materialised(x, mu, sigma, b_mu, b_sigma):
    eps_in, eps_out = _noise(mu.shape[0]), _noise(mu.shape[1])
    kernel = mu + sigma * (eps_in[:, None] * eps_out[None, :])
    return tf.tensordot(x, kernel, axes=1) + b_mu + b_sigma * eps_out


def factorised(x, mu, sigma, b_mu, b_sigma):
    eps_in, eps_out = _noise(mu.shape[0]), _noise(mu.shape[1])
    return (tf.tensordot(x, mu, axes=1)
            + tf.tensordot(x * eps_in, sigma, axes=1) * eps_out
            + b_mu + b_sigma * eps_out)


def make_step(form, mode, variables):
    def forward(x):
        return form(x, *variables)

    def train(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(form(x, *variables)))
        return tape.gradient(loss, variables[:2])

    return tf.function(forward if mode == "policy" else train)


def time_step(fn, x, rounds):
    for _ in range(3):
        fn(x)
    wall, cpu = [], []
    for _ in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), fn(x))
        wall.append((time.perf_counter() - w0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    rows = []
    for name, (tokens, d, h) in SHAPES.items():
        variables = [tf.Variable(tf.random.uniform([d, h], -0.01, 0.01)),
                     tf.Variable(tf.fill([d, h], 0.1 / d ** 0.5)),
                     tf.Variable(tf.zeros([h])), tf.Variable(tf.fill([h], 0.01))]
        for mode, batch in (("policy", 1), ("train", args.batch_size)):
            shape = [batch, d] if tokens == 1 else [batch, tokens, d]
            x = tf.random.uniform(shape)
            row = {"layer": name, "mode": mode, "rows": batch * tokens, "d": d, "h": h}
            steps = {f: make_step(fn, mode, variables) for f, fn in
                     (("materialised", materialised), ("factorised", factorised))}
            samples = {f: ([], []) for f in steps}
            for _ in range(3):  # alternate the two forms
                for form, fn in steps.items():
                    wall, cpu = time_step(fn, x, max(1, args.rounds // 3))
                    samples[form][0].append(wall)
                    samples[form][1].append(cpu)
            for form, (wall, cpu) in samples.items():
                row[f"{form}_ms"] = statistics.median(wall)
                row[f"{form}_cpu_ms"] = statistics.median(cpu)
            row["factorised_over_materialised"] = (row["factorised_ms"]
                                                   / row["materialised_ms"])
            row["cpu_ratio"] = row["factorised_cpu_ms"] / row["materialised_cpu_ms"]
            row["load"] = os.getloadavg()[0]
            rows.append(row)
            print(row, flush=True)
    common.print_table(rows, ["layer", "mode", "rows", "materialised_ms",
                              "factorised_ms", "materialised_cpu_ms",
                              "factorised_cpu_ms", "factorised_over_materialised",
                              "cpu_ratio", "load"])
    common.write_json(args.json, "noisy_dense_bench", rows, settings=vars(args))
    return rows


if __name__ == "__main__":
    main()
