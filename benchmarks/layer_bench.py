"""Forward+backward time of the SoftMoE block against the flatten baseline.

At the paper's token sizes after the encoder (11×11 map, PerConv tokens):
Nature CNN → 121 tokens of 64, Impala ResNet → 121 tokens of 32, batch 32.
Rows (each in plain graph mode, `tf.function`, and with XLA,
`tf.function(jit_compile=True)`):

  softmoe-n          `tf_softmoe.layers.SoftMoE(n, 512)`, capacity factor 1,
                     so p = ceil(121/n) slots per expert; n = 1, 4, 8.
  scaled-softmoe-1   one expert of hidden 2048 (the width of SoftMoE-4).
  flatten-xk         flatten [B, 121·d] → Dense(512·k) → ReLU, k = 1, 4.
  naive-softmoe-n    the same SoftMoE math written the way the layer avoids:
                     a Python loop over experts, each a separate pair of
                     `tf.keras.layers.Dense`, on slot inputs sliced per
                     expert; n = 4, 8.
  softmoe-4/<variant>  SoftMoE-4's own weights run through another op
                     order (see `VARIANTS`), to see whether the layer's
                     einsums leave speed on the table.

One timed step is a `tf.function` that runs the block, flattens its output,
multiplies it by a fixed (non-trainable) random head to 18 actions, takes
the mean square as the loss, and returns the gradients w.r.t. every
trainable variable of the block (not applied). Times are the median over
`--rounds` calls after 3 warm-up calls (`benchmarks.common.time_call`).

Columns:
  params           trainable parameters of the block.
  mflops           analytic forward FLOPs of the block for the whole batch,
                   2 per multiply-add of every matmul/einsum (softmax, bias,
                   ReLU and the fixed head left out).
  fb_mflops        forward plus the backward matmuls the gradients need:
                   each matmul once more per operand whose gradient is
                   required (not the input tokens').
  median_ms, min_ms  wall time of one step.
  cpu_ms           median process CPU time of one step, all threads.
  gflop_s          fb_mflops / median_ms.
  vs_flatten4      median_ms / median_ms of flatten-x4, same encoder and mode;
  vs_flatten4_min  the same for min_ms; cpu_vs_flatten4 the same for cpu_ms.
The JSON rows also hold `max_ms` and `first_call_s` (tracing plus, with
XLA, compilation). The 1-minute load average before and after the run is
printed and stored.
On a shared machine other processes inflate wall times: compare ratios,
prefer the CPU-time one, and pass `--repeats K` so that the rows take turns
K times. `--threads 1` measures the work itself: one thread neither spins
nor waits for a busy sibling, so its CPU time hardly depends on the load.

Before timing, the naive formulation and every variant are checked to give
the layer's output on the same weights.

Usage:
  python -m benchmarks.layer_bench [--json PATH] [--rounds 10] [--batch 32]
      [--jit both|xla|graph] [--repeats 1] [--threads 0] [--no-variants]

The JSON goes wherever `--json` says (nothing is written without it); the
conventional place is `runs/benchmarks/layer_bench.json`, which git ignores.
"""

import argparse
import math
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_softmoe  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TF)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common  # noqa: E402
from tf_softmoe.layers import SoftMoE  # noqa: E402

ENCODERS = {"nature": (121, 64), "impala": (121, 32)}
NUM_ACTIONS = 18
EXPERT_HIDDEN = 512
FLATTEN_UNITS = 512
WARMUP = 3


class NaiveSoftMoE(tf.keras.layers.Layer):
    """SoftMoE with a Python loop over experts, each two `Dense` layers.

    Routing is the layer's (same Φ shape, same two softmaxes); the slot
    inputs `[B, n, p, d]` are sliced per expert, each slice goes through
    its own `Dense(h, relu)` and `Dense(d)`, and the n results are stacked
    back before the combine. This is the formulation `SoftMoE` replaces with
    one einsum per expert layer.
    """

    def __init__(self, num_experts, slots_per_expert, hidden_units, **kwargs):
        super().__init__(**kwargs)
        self.num_experts = num_experts
        self.slots_per_expert = slots_per_expert
        self.hidden_units = hidden_units

    def build(self, input_shape):
        d = int(input_shape[-1])
        n, p = self.num_experts, self.slots_per_expert
        self.phi = self.add_weight(
            "phi", shape=(d, n, p), initializer=tf.keras.initializers.LecunNormal())
        self.expert_in = [tf.keras.layers.Dense(self.hidden_units, activation="relu",
                                                name=f"expert{e}_in")
                          for e in range(n)]
        self.expert_out = [tf.keras.layers.Dense(d, name=f"expert{e}_out")
                           for e in range(n)]
        for dense_in, dense_out in zip(self.expert_in, self.expert_out):
            dense_in.build((None, p, d))
            dense_out.build((None, p, self.hidden_units))
        super().build(input_shape)

    def copy_weights_from(self, layer):
        """Takes Φ and every expert's kernels and biases from a `SoftMoE`."""
        self.phi.assign(layer.phi)
        experts = layer.experts
        for e, (dense_in, dense_out) in enumerate(zip(self.expert_in, self.expert_out)):
            dense_in.kernel.assign(experts.kernel_in[e])
            dense_in.bias.assign(experts.bias_in[e])
            dense_out.kernel.assign(experts.kernel_out[e])
            dense_out.bias.assign(experts.bias_out[e])

    def call(self, inputs):
        logits = tf.einsum("bmd,dnp->bmnp", inputs, self.phi)
        dispatch = tf.nn.softmax(logits, axis=1)
        shape = tf.shape(logits)
        flat = tf.reshape(logits, [shape[0], shape[1], -1])
        combine = tf.reshape(tf.nn.softmax(flat, axis=-1), shape)
        slot_inputs = tf.einsum("bmd,bmnp->bnpd", inputs, dispatch)
        slot_outputs = tf.stack(
            [dense_out(dense_in(slot_inputs[:, e]))
             for e, (dense_in, dense_out) in enumerate(zip(self.expert_in,
                                                           self.expert_out))],
            axis=1)
        return tf.einsum("bnpd,bmnp->bmd", slot_outputs, combine)


def _expert_major_einsums(layer, tokens):
    """The layer's math with slots laid out `[n, B, p, d]` for the experts.

    The dispatch einsum writes the slots expert-major directly. In the
    layer's `[B, n, p, ·]` layout, TensorFlow's Einsum kernel transposes the
    h-wide hidden `[B, n, p, h]` tensor to put the batch axis n first, in
    both expert einsums and in their gradient einsums, and the bias
    gradients reduce over the non-adjacent axes B and p; here n leads.
    """
    dispatch, combine = layer.routing_weights(tokens)
    experts = layer.experts
    slots = tf.einsum("bmd,bmnp->nbpd", tokens, dispatch)
    hidden = tf.einsum("nbpd,ndh->nbph", slots, experts.kernel_in)
    hidden = tf.nn.relu(hidden + experts.bias_in[:, None, None, :])
    outputs = tf.einsum("nbph,nho->nbpo", hidden, experts.kernel_out)
    outputs = outputs + experts.bias_out[:, None, None, :]
    return tf.einsum("nbpd,bmnp->bmd", outputs, combine)


def _explicit_matmuls(layer, tokens):
    """The layer's math as reshapes and `tf.linalg.matmul` with adjoint flags.

    Logits as one [B·m, d]×[d, n·p] matmul; dispatch as Dᵀ X through
    `transpose_a` (no transpose of the [B, m, n·p] weights); the experts on
    `[n, B·p, d]`; the combine as C Ỹ on `[B, n·p, d]`.
    """
    experts = layer.experts
    m, d = int(tokens.shape[1]), int(tokens.shape[2])
    n, p = layer.num_experts, layer.slots_per_expert
    batch = tf.shape(tokens)[0]
    logits = tf.reshape(
        tf.matmul(tf.reshape(tokens, [-1, d]), tf.reshape(layer.phi, [d, n * p])),
        [batch, m, n * p])
    dispatch = tf.nn.softmax(logits, axis=1)
    combine = tf.nn.softmax(logits, axis=-1)
    slots = tf.matmul(dispatch, tokens, transpose_a=True)
    slots = tf.reshape(tf.transpose(tf.reshape(slots, [batch, n, p, d]), [1, 0, 2, 3]),
                       [n, -1, d])
    hidden = tf.nn.relu(tf.matmul(slots, experts.kernel_in)
                        + experts.bias_in[:, None, :])
    outputs = tf.matmul(hidden, experts.kernel_out) + experts.bias_out[:, None, :]
    outputs = tf.reshape(tf.transpose(tf.reshape(outputs, [n, batch, p, d]),
                                      [1, 0, 2, 3]), [batch, n * p, d])
    return tf.matmul(combine, outputs)


def _experts_transposed(layer, tokens):
    """The layer's own routing and einsums, experts run on `[n, B·p, d]`.

    A drop-in for `ExpertMLP.call` (same `[B, n, p, d]` in and out): only the
    two small d-wide tensors are transposed, never the h-wide hidden one,
    and the bias gradients reduce over contiguous rows.
    """
    dispatch, combine = layer.routing_weights(tokens)
    experts = layer.experts
    n, p, d = layer.num_experts, layer.slots_per_expert, int(tokens.shape[-1])
    batch = tf.shape(tokens)[0]
    slots = tf.einsum("bmd,bmnp->bnpd", tokens, dispatch)
    slots = tf.reshape(tf.transpose(slots, [1, 0, 2, 3]), [n, -1, d])
    hidden = tf.nn.relu(tf.matmul(slots, experts.kernel_in)
                        + experts.bias_in[:, None, :])
    outputs = tf.matmul(hidden, experts.kernel_out) + experts.bias_out[:, None, :]
    outputs = tf.transpose(tf.reshape(outputs, [n, batch, p, d]), [1, 0, 2, 3])
    return tf.einsum("bnpd,bmnp->bmd", outputs, combine)


VARIANTS = {
    "expert-major": _expert_major_einsums,
    "matmul": _explicit_matmuls,
    "experts-transposed": _experts_transposed,
}


def _softmoe_flops(m, d, n, p, h):
    """(forward, forward+backward) matmul FLOPs of SoftMoE for one sample.

    Logits X·Φ and dispatch Dᵀ·X need only one operand's gradient (X is the
    input); both expert layers and the combine need both.
    """
    route = 2 * m * d * n * p
    expert = 2 * n * p * d * h
    forward = 3 * route + 2 * expert
    backward = route + route + 2 * (2 * expert) + 2 * route
    return forward, forward + backward


def _flatten_flops(m, d, units):
    forward = 2 * m * d * units
    return forward, 2 * forward


def _fixed_head(features_dim, seed):
    rng = np.random.default_rng(seed)
    head = rng.standard_normal((features_dim, NUM_ACTIONS)) / math.sqrt(features_dim)
    return tf.constant(head, dtype=tf.float32)


def _make_step(forward, variables, head, jit_compile):
    """tf.function: loss = mean((flatten(forward(x)) · head)²); returns its grads."""

    @tf.function(jit_compile=jit_compile)
    def step(tokens):
        with tf.GradientTape() as tape:
            features = forward(tokens)
            features = tf.reshape(features, [tf.shape(features)[0], -1])
            loss = tf.reduce_mean(tf.square(tf.matmul(features, head)))
        return loss, tape.gradient(loss, variables)

    return step


def _build_softmoe(tokens, num_experts, hidden):
    layer = SoftMoE(num_experts, expert_hidden_units=hidden)
    layer(tokens)
    return layer


def _cases(m, d, tokens, with_variants):
    """The rows of one encoder: dicts of model, n, p, h, forward, variables, flops.

    The naive formulation and the variants take the layer's weights and are
    checked against its output here, so every SoftMoE row computes the same
    function.
    """
    cases = []
    layers = {}
    for n, hidden, name in ((1, EXPERT_HIDDEN, "softmoe-1"),
                            (4, EXPERT_HIDDEN, "softmoe-4"),
                            (8, EXPERT_HIDDEN, "softmoe-8"),
                            (1, 4 * EXPERT_HIDDEN, "scaled-softmoe-1")):
        layer = _build_softmoe(tokens, n, hidden)
        layers[name] = layer
        p = layer.slots_per_expert
        cases.append({"model": name, "n": n, "p": p, "h": hidden,
                      "forward": layer, "variables": layer.trainable_variables,
                      "flops": _softmoe_flops(m, d, n, p, hidden)})
    for k in (1, 4):
        dense = tf.keras.layers.Dense(FLATTEN_UNITS * k, activation="relu")
        dense.build((None, m * d))

        def flatten_forward(x, dense=dense):
            return dense(tf.reshape(x, [-1, m * d]))

        cases.append({"model": f"flatten-x{k}", "n": "", "p": "", "h": FLATTEN_UNITS * k,
                      "forward": flatten_forward, "variables": dense.trainable_variables,
                      "flops": _flatten_flops(m, d, FLATTEN_UNITS * k)})
    for n in (4, 8):
        layer = layers[f"softmoe-{n}"]
        p = layer.slots_per_expert
        naive = NaiveSoftMoE(n, p, EXPERT_HIDDEN)
        naive(tokens)
        naive.copy_weights_from(layer)
        _check_same(f"naive-softmoe-{n}", naive(tokens), layer(tokens))
        cases.append({"model": f"naive-softmoe-{n}", "n": n, "p": p, "h": EXPERT_HIDDEN,
                      "forward": naive, "variables": naive.trainable_variables,
                      "flops": _softmoe_flops(m, d, n, p, EXPERT_HIDDEN)})
    if with_variants:
        layer = layers["softmoe-4"]
        for variant, fn in VARIANTS.items():
            def variant_forward(x, fn=fn, layer=layer):
                return fn(layer, x)

            _check_same(f"softmoe-4/{variant}", variant_forward(tokens), layer(tokens))
            cases.append({"model": f"softmoe-4/{variant}", "n": 4,
                          "p": layer.slots_per_expert, "h": EXPERT_HIDDEN,
                          "forward": variant_forward,
                          "variables": layer.trainable_variables,
                          "flops": _softmoe_flops(m, d, 4, layer.slots_per_expert,
                                                  EXPERT_HIDDEN)})
    return cases


def _check_same(name, ours, reference):
    error = float(tf.reduce_max(tf.abs(ours - reference)))
    scale = float(tf.reduce_max(tf.abs(reference)))
    if error > 1e-4 * max(scale, 1.0):
        raise AssertionError(
            f"{name} differs from tf_softmoe.layers.SoftMoE by {error:g} "
            f"(output scale {scale:g}); the benchmark would compare different maths.")


def _sync():
    # CPU execution is synchronous; accelerators return before the kernels finish.
    if tf.config.list_physical_devices("GPU"):
        tf.test.experimental.sync_devices()


class _TimedStep:
    """One row's step, traced and compiled on construction.

    Calling it runs the step once and records the process CPU time it took
    (all threads), which other processes on the machine inflate far less
    than the wall time that `common.time_call` measures.
    """

    def __init__(self, case, tokens, head, jit_compile):
        self._step = _make_step(case["forward"], case["variables"], head, jit_compile)
        self._tokens = tokens
        start = time.perf_counter()
        self._step(tokens)
        _sync()
        self.first_call_s = time.perf_counter() - start
        self.cpu_ms = []

    def __call__(self):
        start = time.process_time()
        self._step(self._tokens)
        _sync()
        self.cpu_ms.append((time.process_time() - start) * 1e3)


def _time_block(steps, rounds, repeats):
    """Times every step; with repeats > 1 the steps take turns, pass by pass.

    Taking turns spreads load from other processes over all rows alike, so
    their ratios stay meaningful on a shared machine. Each pass is one
    `common.time_call`; the reported median is the median of the passes'
    medians, the min and max are over all rounds; `cpu_ms` is the median
    process CPU time over the timed rounds (warm-up calls left out).
    """
    passes = [[] for _ in steps]
    cpu = [[] for _ in steps]
    for repeat in range(repeats):
        for index, step in enumerate(steps):
            passes[index].append(common.time_call(
                step, rounds=rounds, warmup=WARMUP if repeat == 0 else 1))
            cpu[index].extend(step.cpu_ms[-rounds:])
    return [{"median_ms": statistics.median(t["median_ms"] for t in timings),
             "min_ms": min(t["min_ms"] for t in timings),
             "max_ms": max(t["max_ms"] for t in timings),
             "cpu_ms": statistics.median(cpu_samples),
             "rounds": rounds * repeats}
            for timings, cpu_samples in zip(passes, cpu)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write results here")
    parser.add_argument("--rounds", type=int, default=10,
                        help="timed calls per row, after 3 warm-up calls")
    parser.add_argument("--batch", type=int, default=32, help="samples per step")
    parser.add_argument("--jit", choices=("both", "xla", "graph"), default="both")
    parser.add_argument("--repeats", type=int, default=1,
                        help="passes of --rounds each, the rows taking turns")
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra- and inter-op threads (0: its default)")
    parser.add_argument("--no-variants", action="store_true",
                        help="skip the alternative op orders of the layer")
    args = parser.parse_args()
    if min(args.rounds, args.batch, args.repeats) < 1:
        parser.error("--rounds, --batch and --repeats must be >= 1")
    if args.threads < 0:
        parser.error("--threads must be >= 0 (0 keeps TensorFlow's default)")
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    modes = {"both": (("graph", False), ("xla", True)),
             "graph": (("graph", False),),
             "xla": (("xla", True),)}[args.jit]

    tf.random.set_seed(0)
    load_before = os.getloadavg()
    rows = []
    for encoder, (m, d) in ENCODERS.items():
        tokens = tf.random.normal([args.batch, m, d], seed=1)
        cases = _cases(m, d, tokens, not args.no_variants)
        for mode, jit_compile in modes:
            steps = []
            for case in cases:
                head_dim = case["h"] if case["model"].startswith("flatten") else m * d
                steps.append(_TimedStep(case, tokens, _fixed_head(head_dim, seed=2),
                                        jit_compile))
            timings = _time_block(steps, args.rounds, args.repeats)
            block = []
            for case, timing, step in zip(cases, timings, steps):
                forward, forward_backward = case["flops"]
                fb_mflops = forward_backward * args.batch / 1e6
                block.append({
                    "encoder": encoder, "tokens": f"{m}x{d}", "batch": args.batch,
                    "model": case["model"], "n": case["n"], "p": case["p"],
                    "h": case["h"], "jit": mode,
                    "params": int(sum(np.prod(v.shape) for v in case["variables"])),
                    "mflops": forward * args.batch / 1e6, "fb_mflops": fb_mflops,
                    "median_ms": timing["median_ms"], "min_ms": timing["min_ms"],
                    "max_ms": timing["max_ms"], "rounds": timing["rounds"],
                    "cpu_ms": timing["cpu_ms"], "first_call_s": step.first_call_s,
                    "gflop_s": fb_mflops / timing["median_ms"],
                })
                print(f"  {encoder:6s} {mode:5s} {case['model']:24s} "
                      f"{timing['median_ms']:8.2f} ms", flush=True)
            flatten4 = next(r for r in block if r["model"] == "flatten-x4")
            for row in block:
                row["vs_flatten4"] = row["median_ms"] / flatten4["median_ms"]
                row["vs_flatten4_min"] = row["min_ms"] / flatten4["min_ms"]
                row["cpu_vs_flatten4"] = row["cpu_ms"] / flatten4["cpu_ms"]
            rows.extend(block)
    load_after = os.getloadavg()

    print()
    common.print_table(rows, ["encoder", "jit", "model", "n", "p", "h", "params",
                              "mflops", "fb_mflops", "median_ms", "min_ms", "cpu_ms",
                              "gflop_s", "vs_flatten4", "vs_flatten4_min",
                              "cpu_vs_flatten4"])
    print()
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    for row in rows:
        if row["model"] == "softmoe-4":
            verdict = "no more than" if row["vs_flatten4"] <= 1.0 else "MORE than"
            print(f"{row['encoder']:6s} {row['jit']:5s}: SoftMoE-4 costs "
                  f"{row['vs_flatten4']:.2f}x flatten-x4 by median wall time, "
                  f"{row['vs_flatten4_min']:.2f}x by fastest round, "
                  f"{row['cpu_vs_flatten4']:.2f}x by CPU time "
                  f"({verdict} the x4 baseline by median)")
    common.write_json(args.json, "layer_bench", rows,
                      config={"batch": args.batch, "rounds": args.rounds,
                              "warmup": WARMUP, "jit": args.jit,
                              "repeats": args.repeats, "threads": args.threads,
                              "load_average_before": load_before,
                              "load_average_after": load_after,
                              "variants": not args.no_variants,
                              "num_actions_head": NUM_ACTIONS})


if __name__ == "__main__":
    main()
