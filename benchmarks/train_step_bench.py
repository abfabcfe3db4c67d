"""Train-step time of tf_softmoe against its peers, measured side by side.

For each case (agent × encoder × penultimate block, see
`benchmarks.peers.cases`; batch 32 of 84×84×4 uint8 frames, Pong's 6
actions) the same replay-shaped batch goes through one full update in:

  ours_graph     `Learner(agent, jit_compile=False).train(batch)`: the
                 TF-Agents agent's loss, gradients, Adam and target sync in
                 one `tf.function`, results back as NumPy.
  ours_xla       the same with `jit_compile=True`.
  jax            dopamine-rl 4.1.2's own `dopamine/labs/moes` train step
                 (`benchmarks.peers.jax_peer`), in /work/peer_envs/jax.
  ours_*_onednn  the two above in a subprocess with TF_ENABLE_ONEDNN_OPTS=1
                 (TensorFlow's oneDNN CPU kernels; TensorFlow leaves them off
                 by default on CPUs without AVX-512, such as this one, and
                 tf_softmoe now turns them on itself, so these equal ours_*).
  ours_*_eigen   opt-in (`--impls`): TF_ENABLE_ONEDNN_OPTS=0, Eigen kernels.
  torch_eager    our PyTorch version of the same networks and losses
  torch_compile  (`benchmarks.peers.torch_peer`), eager and with
                 `torch.compile`, in /work/peer_envs/torch.

Each peer is a worker process in its own virtual environment; the driver
builds a case everywhere, runs `--warmup` steps per implementation, then
`--rounds` rounds in which every implementation runs `--steps` steps, the
order rotating each round, so that the machine's load falls on all of them
alike. Reported per implementation: median and minimum wall ms per step,
median process-CPU ms per step (all threads; less sensitive to other jobs
than wall time), the first step's seconds (tracing/compilation; builds of
one case overlap across processes unless `--serial-builds`), the parameter
count, and for ours the ratio ours/peer for every peer (wall and CPU). The
1-minute load average is recorded before and after each case.

Also reported: for each case which of graph and XLA is faster (the
`--jit_compile=auto` question) and, for rainbow/impala/softmoe4, the goal
"≤ 0.8 × the fastest peer".

`--threads 1` runs every implementation on one thread (TensorFlow's intra-
and inter-op pools, torch's, XLA:CPU's through XLA_FLAGS): on a loaded
machine a multi-threaded pool both steals more of the CPU from the other
implementations and burns CPU spinning, so the single-thread numbers are the
cleaner comparison of work per step.

Usage:
  python -m benchmarks.train_step_bench [--cases rainbow/impala/softmoe4]
      [--impls ours_graph,ours_xla,jax,torch_eager,torch_compile]
      [--rounds 5] [--steps 2] [--warmup 2] [--setup-peers]
      [--peer-root /work/peer_envs] [--serial-builds] [--threads N]
      [--json PATH]
`--cases all` runs the whole 2 × 2 × 5 matrix (long on 2 cores: every case
compiles in five implementations); `*` matches any field, e.g.
`rainbow/*/softmoe4`.
"""

import argparse
import gc
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_softmoe  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TF)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tf_agents.specs import array_spec  # noqa: E402
from tf_agents.trajectories import time_step as ts  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.peers import cases as cases_lib  # noqa: E402
from benchmarks.peers import protocol  # noqa: E402
from benchmarks.peers import setup_envs  # noqa: E402
from tf_softmoe.agents import AgentConfig  # noqa: E402
from tf_softmoe.agents import make_agent  # noqa: E402
from tf_softmoe.networks import NetworkConfig  # noqa: E402
from tf_softmoe.config import NETWORK_PRESETS  # noqa: E402
from tf_softmoe.train.learner import Learner  # noqa: E402
from tf_softmoe.train.learner import resolve_jit_compile  # noqa: E402

OURS = ("ours_graph", "ours_xla")
PEERS = {
    # name: (venv, worker module, worker args)
    "jax": ("jax", "benchmarks.peers.jax_peer", ()),
    "torch_eager": ("torch", "benchmarks.peers.torch_peer", ()),
    "torch_compile": ("torch", "benchmarks.peers.torch_peer", ("--compile",)),
}
# tf_softmoe variants that must run in a process of their own (settings read
# when TensorFlow loads): name → (worker args, environment).
# Since tf_softmoe turns oneDNN on by default (`setdefault` in its
# __init__), ours_graph/ours_xla equal the *_onednn variants there and the
# *_eigen variants (opt-in) give TensorFlow's Eigen kernels.
VARIANTS = {
    "ours_graph_onednn": (("--jit", "graph"), {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    "ours_xla_onednn": (("--jit", "xla"), {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    "ours_graph_eigen": (("--jit", "graph"), {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "ours_xla_eigen": (("--jit", "xla"), {"TF_ENABLE_ONEDNN_OPTS": "0"}),
}
ONEDNN_VARIANTS = ("ours_graph_onednn", "ours_xla_onednn")
DEFAULT_IMPLS = OURS + ONEDNN_VARIANTS + tuple(PEERS)
GOAL_CASE = "rainbow/impala/softmoe4"
GOAL_RATIO = 0.8
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def set_tf_threads(threads):
    """Limits TensorFlow's intra- and inter-op pools (0: leave the default).
    Must run before TensorFlow executes its first op."""
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def network_config(case):
    """tf_softmoe's `NetworkConfig` for a case's agent, encoder and block
    (the agent's head, atoms, dueling and noise: `config.NETWORK_PRESETS`)."""
    kind, experts, scale = cases_lib.BLOCK_SHAPES[case["block"]]
    return NetworkConfig(encoder=case["encoder"], penultimate=kind,
                         num_experts=experts, scale=scale,
                         **NETWORK_PRESETS[case["agent"]])


def specs(case):
    observation = array_spec.BoundedArraySpec((84, 84, 4), np.uint8, 0, 255)
    action = array_spec.BoundedArraySpec((), np.int64, 0, case["num_actions"] - 1)
    return ts.time_step_spec(observation), action


def build_ours(case, jit_compile):
    """`(step, num_params)` of tf_softmoe's compiled train step for a case."""
    time_step_spec, action_spec = specs(case)
    agent = make_agent(AgentConfig.preset(case["agent"]), network_config(case),
                       time_step_spec, action_spec)
    learner = Learner(agent, jit_compile=jit_compile)
    batch = cases_lib.synthetic_batch(case, 0, np)
    params = int(sum(np.prod(v.shape) for v in
                     agent.q_network.trainable_variables))
    return (lambda: learner.train(batch)), params


class OursWorker:
    """tf_softmoe in this process, with the same interface as a peer."""

    def __init__(self, name, jit_compile):
        self.name = name
        self.jit_compile = jit_compile
        self.steps = {}

    def build(self, key, case):
        try:
            start = time.perf_counter()
            step, params = build_ours(case, self.jit_compile)
            built = time.perf_counter()
            step()
            self.steps[key] = step
            return {"ok": True, "build_s": built - start,
                    "first_step_s": time.perf_counter() - built, "params": params}
        except Exception as error:  # noqa: BLE001 — reported in the row
            return {"ok": False, "error": f"{type(error).__name__}: {error}"}

    def time(self, key, steps):
        wall, cpu = protocol.timed_steps(self.steps[key], steps)
        return {"ok": True, "wall_ms": wall, "cpu_ms": cpu}

    def drop(self, key):
        self.steps.pop(key, None)
        gc.collect()

    def close(self):
        self.steps.clear()


class PeerWorker:
    """A peer worker process behind the same interface as `OursWorker`."""

    def __init__(self, name, python, module, args, log_path, env=None):
        self.name = name
        self.process = protocol.PeerProcess(name, python, module, args,
                                            cwd=REPO_ROOT, env=env,
                                            log_path=log_path)
        self.info = self.process.request(op="info")

    def start_build(self, key, case):
        self.process.send(op="build", key=key, case=case)

    def finish_build(self):
        return self.process.receive()

    def build(self, key, case):
        self.start_build(key, case)
        return self.finish_build()

    def time(self, key, steps):
        return self.process.request(op="time", key=key, steps=steps)

    def drop(self, key):
        self.process.request(op="drop", key=key)

    def close(self):
        self.process.close()


def load_average():
    return os.getloadavg()[0]


def summarise(wall, cpu):
    return {"median_ms": statistics.median(wall), "min_ms": min(wall),
            "max_ms": max(wall), "cpu_ms": statistics.median(cpu),
            "samples": len(wall)}


def bench_case(case, workers, rounds, steps, warmup, serial_builds, log):
    """Builds one case in every worker, then times them interleaved.

    Returns a list of rows, one per implementation.
    """
    key = cases_lib.case_key(case)
    load_before = load_average()
    builds = {}
    peers = [w for w in workers if isinstance(w, PeerWorker)]
    if not serial_builds:
        for worker in peers:  # peers compile while ours does
            worker.start_build(key, case)
    for worker in workers:
        if isinstance(worker, OursWorker) or serial_builds:
            builds[worker.name] = worker.build(key, case)
            log(f"  built {worker.name}: {_short(builds[worker.name])}")
    if not serial_builds:
        for worker in peers:
            builds[worker.name] = worker.finish_build()
            log(f"  built {worker.name}: {_short(builds[worker.name])}")
    live = [w for w in workers if builds[w.name].get("ok")]
    samples = {w.name: ([], []) for w in live}
    for worker in live:
        if warmup:
            worker.time(key, warmup)
    for r in range(rounds):
        order = live[r % len(live):] + live[:r % len(live)] if live else []
        for worker in order:
            answer = worker.time(key, steps)
            if not answer.get("ok"):
                builds[worker.name] = answer
                continue
            samples[worker.name][0].extend(answer["wall_ms"])
            samples[worker.name][1].extend(answer["cpu_ms"])
        log(f"  round {r + 1}/{rounds} " + "  ".join(
            f"{n}={statistics.median(s[0]):.0f}ms" for n, s in samples.items()
            if s[0]))
    for worker in workers:
        worker.drop(key)
    load_after = load_average()
    rows = []
    for worker in workers:
        build = builds[worker.name]
        row = {"case": key, **case, "impl": worker.name,
               "load_before": load_before, "load_after": load_after}
        wall, cpu = samples.get(worker.name, ([], []))
        if build.get("ok") and wall:
            row.update(summarise(wall, cpu))
            row.update({"first_step_s": build["first_step_s"],
                        "build_s": build["build_s"], "params": build["params"]})
        else:
            row["error"] = build.get("error", "no samples")
        rows.append(row)
    add_ratios(rows)
    return rows


def _short(answer):
    if answer.get("ok"):
        return f"first step {answer['first_step_s']:.1f}s, {answer['params']} params"
    return "ERROR " + answer.get("error", "")[:200]


def add_ratios(rows):
    """ours/peer (wall median and CPU median) on each of ours' rows."""
    timed = {r["impl"]: r for r in rows if "median_ms" in r}
    for row in rows:
        if not row["impl"].startswith("ours") or "median_ms" not in row:
            continue
        for peer in PEERS:
            if peer in timed:
                row[f"vs_{peer}"] = row["median_ms"] / timed[peer]["median_ms"]
                row[f"cpu_vs_{peer}"] = row["cpu_ms"] / timed[peer]["cpu_ms"]


JIT_PAIRS = (("ours_graph", "ours_xla", "default"),
             ("ours_graph_onednn", "ours_xla_onednn", "onednn"),
             ("ours_graph_eigen", "ours_xla_eigen", "eigen"))


def auto_choice(case):
    """"xla" or "graph": what `jit_compile="auto"` picks for the case's
    network on this machine."""
    return "xla" if resolve_jit_compile("auto", network_config(case)) else "graph"


def jit_decisions(rows):
    """Per case and kernel setting: graph and XLA times, which is faster, and
    what `jit_compile="auto"` picks (`auto_over_best`: its time over the
    faster one's, 1 when it picks the faster)."""
    out = []
    for key in sorted({r["case"] for r in rows}):
        mine = {r["impl"]: r for r in rows if r["case"] == key and "median_ms" in r}
        for graph_name, xla_name, setting in JIT_PAIRS:
            if graph_name not in mine or xla_name not in mine:
                continue
            graph, xla = mine[graph_name], mine[xla_name]
            case = next(r for r in rows if r["case"] == key)
            auto = auto_choice(case)
            best = min(graph["median_ms"], xla["median_ms"])
            out.append({
                "case": key, "kernels": setting,
                "graph_ms": graph["median_ms"], "xla_ms": xla["median_ms"],
                "graph_cpu_ms": graph["cpu_ms"], "xla_cpu_ms": xla["cpu_ms"],
                "xla_over_graph": xla["median_ms"] / graph["median_ms"],
                "xla_over_graph_cpu": xla["cpu_ms"] / graph["cpu_ms"],
                "faster": "xla" if xla["median_ms"] < graph["median_ms"] else "graph",
                "auto": auto,
                "auto_over_best": (xla if auto == "xla" else graph)["median_ms"] / best,
                "graph_first_step_s": graph["first_step_s"],
                "xla_first_step_s": xla["first_step_s"],
            })
    return out


def goal_status(rows):
    """Rainbow-Impala-SoftMoE-4: each of ours / fastest peer, vs 0.8; `met`
    for the library as it is (ours_graph/ours_xla), `met_onednn` with the
    oneDNN setting."""
    mine = {r["impl"]: r for r in rows if r["case"] == GOAL_CASE and "median_ms" in r}
    peers = [mine[p] for p in PEERS if p in mine]
    ours = [n for n in OURS + tuple(VARIANTS) if n in mine]
    if not peers or not ours:
        return None
    fastest = min(peers, key=lambda r: r["median_ms"])
    fastest_cpu = min(peers, key=lambda r: r["cpu_ms"])
    status = {"case": GOAL_CASE, "target_ratio": GOAL_RATIO,
              "fastest_peer": fastest["impl"], "fastest_peer_ms": fastest["median_ms"],
              "fastest_peer_cpu": fastest_cpu["impl"],
              "fastest_peer_cpu_ms": fastest_cpu["cpu_ms"], "ours": ours}
    for name in ours:
        status[f"{name}_ratio"] = mine[name]["median_ms"] / fastest["median_ms"]
        status[f"{name}_cpu_ratio"] = mine[name]["cpu_ms"] / fastest_cpu["cpu_ms"]
    for label, names in (("met", OURS), ("met_onednn", ONEDNN_VARIANTS)):
        ratios = [status[f"{n}_ratio"] for n in names if n in mine]
        if ratios:
            status[label] = min(ratios) <= GOAL_RATIO
    return status


def make_workers(impls, peer_root, setup_peers, log_dir, log):
    workers = []
    for name in impls:
        if name == "ours_graph":
            workers.append(OursWorker(name, False))
        elif name == "ours_xla":
            workers.append(OursWorker(name, True))
        elif name in VARIANTS:
            args, env = VARIANTS[name]
            log_path = os.path.join(log_dir, f"{name}.log") if log_dir else None
            worker = PeerWorker(name, sys.executable, "benchmarks.peers.ours_worker",
                                args, log_path, env=env)
            log(f"{name}: {worker.info}")
            workers.append(worker)
        elif name in PEERS:
            venv, module, args = PEERS[name]
            if setup_peers:
                python = setup_envs.ensure(peer_root, venv, log=log)
            elif setup_envs.is_ready(peer_root, venv):
                python = setup_envs.python_of(peer_root, venv)
            else:
                log(f"skipping {name}: {peer_root}/{venv} is not set up "
                    "(run with --setup-peers)")
                continue
            log_path = os.path.join(log_dir, f"{name}.log") if log_dir else None
            worker = PeerWorker(name, python, module, args, log_path)
            log(f"{name}: {worker.info}")
            workers.append(worker)
        else:
            raise ValueError(f"Unknown implementation {name!r}; choose from "
                             f"{list(DEFAULT_IMPLS)}.")
    return workers


def print_results(rows, decisions, goal):
    columns = ["case", "impl", "median_ms", "min_ms", "cpu_ms", "first_step_s",
               "vs_jax", "vs_torch_eager", "vs_torch_compile", "cpu_vs_jax",
               "cpu_vs_torch_eager", "cpu_vs_torch_compile", "load_before", "error"]
    common.print_table(rows, columns)
    if decisions:
        print("\njit_compile: graph vs XLA")
        common.print_table(decisions, ["case", "kernels", "graph_ms", "xla_ms",
                                       "graph_cpu_ms", "xla_cpu_ms",
                                       "xla_over_graph", "faster", "auto",
                                       "auto_over_best"])
    if goal:
        print(f"\ngoal {GOAL_CASE} <= {GOAL_RATIO} x fastest peer "
              f"({goal['fastest_peer']} {goal['fastest_peer_ms']:.0f} ms): "
              + ", ".join(f"{n} {goal[n + '_ratio']:.2f}" for n in goal["ours"])
              + "".join(f"; {k}={goal[k]}" for k in ("met", "met_onednn")
                        if k in goal))


def run(args, log=print):
    os.environ[protocol.THREADS_ENV] = str(args.threads)
    set_tf_threads(args.threads)
    cases = cases_lib.parse_cases(args.cases, args.batch_size)
    impls = [s for s in args.impls.split(",") if s]
    log_dir = os.path.dirname(os.path.abspath(args.json)) if args.json else None
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
    workers = make_workers(impls, args.peer_root, args.setup_peers, log_dir, log)
    rows = []
    try:
        for case in cases:
            log(f"{cases_lib.case_key(case)} (load {load_average():.1f})")
            rows.extend(bench_case(case, workers, args.rounds, args.steps,
                                   args.warmup, args.serial_builds, log))
            if args.json:  # keep partial results of long runs
                write(args, rows, workers)
    finally:
        for worker in workers:
            worker.close()
    return rows, workers


def write(args, rows, workers):
    peers = {w.name: w.info for w in workers if isinstance(w, PeerWorker)}
    common.write_json(args.json, "train_step_bench", rows,
                      jit_compile=jit_decisions(rows), goal=goal_status(rows),
                      peers=peers, settings=vars(args))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=GOAL_CASE)
    parser.add_argument("--impls", default=",".join(DEFAULT_IMPLS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2,
                        help="steps per implementation per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--peer-root", default=setup_envs.DEFAULT_ROOT)
    parser.add_argument("--setup-peers", action="store_true",
                        help="create the peers' venvs when missing")
    parser.add_argument("--serial-builds", action="store_true",
                        help="compile one implementation at a time")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads per implementation (0: each library's "
                        "default, 2 here); 1 keeps every implementation on one "
                        "thread, whose CPU time then is not inflated by spinning "
                        "thread pools when other jobs load the machine")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, load "
          f"{load_average():.1f}")
    rows, workers = run(args)
    print()
    print_results(rows, jit_decisions(rows), goal_status(rows))
    write(args, rows, workers)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
