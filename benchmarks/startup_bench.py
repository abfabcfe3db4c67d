"""Import time and first-step (tracing/compilation) time of the train step.

Each measurement runs in a fresh Python process (`--child`), so it sees a
cold start: `import tf_softmoe` + TensorFlow + the agent/learner modules
(import_s), `make_agent` + `Learner` (build_s), the first `Learner.train`
call, which traces the step and, with XLA, compiles it (first_step_s), and
the second call (second_step_s: a warm step, for scale).

Variants, measured alternately in separate processes (`--repeats` times):
  current        the library as it is.
  autograph_off  `Learner`'s `tf.function` built with `autograph=False`
                 (monkeypatched here): TF-Agents' code needs no AutoGraph
                 (its own `common.function` turns it off), and the profile
                 (py-spy) shows AutoGraph's source transformation taking
                 most of the first step.
  onednn         TF_ENABLE_ONEDNN_OPTS=1 in the child's environment.

If experiments/train.py exists, the wall time of
`python experiments/train.py --help` (imports and flag parsing of the train
binary) is measured too.

Usage:
  python -m benchmarks.startup_bench [--cases dqn/nature/flatten1,
      rainbow/impala/softmoe4] [--jit graph,xla]
      [--variants current,autograph_off] [--repeats 1] [--json PATH]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ("current", "autograph_off", "onednn")


def child(case_key, jit, variant):
    """Runs in the fresh process; prints one JSON line."""
    start = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tf_softmoe  # noqa: F401,E501  pylint: disable=g-import-not-at-top,unused-import
    import numpy as np  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from benchmarks import train_step_bench  # pylint: disable=g-import-not-at-top
    from benchmarks.peers import cases as cases_lib  # pylint: disable=g-import-not-at-top
    from tf_softmoe.agents import AgentConfig  # pylint: disable=g-import-not-at-top
    from tf_softmoe.agents import make_agent  # pylint: disable=g-import-not-at-top
    from tf_softmoe.train.learner import Learner  # pylint: disable=g-import-not-at-top
    imported = time.perf_counter()
    case = cases_lib.make_case(*case_key.split("/"))
    tf.random.set_seed(0)
    time_step_spec, action_spec = train_step_bench.specs(case)
    agent = make_agent(AgentConfig.preset(case["agent"]),
                       train_step_bench.network_config(case), time_step_spec,
                       action_spec)
    learner = Learner(agent, jit_compile=jit == "xla")
    if variant == "autograph_off":
        # pylint: disable=protected-access
        learner._train_fn = tf.function(
            learner._train_step, jit_compile=learner.jit_compile,
            input_signature=learner._signature, autograph=False)
    batch = cases_lib.synthetic_batch(case, 0, np)
    built = time.perf_counter()
    first = learner.train(batch)
    stepped = time.perf_counter()
    learner.train(batch)
    done = time.perf_counter()
    print(json.dumps({
        "import_s": imported - start, "build_s": built - imported,
        "first_step_s": stepped - built, "second_step_s": done - stepped,
        "first_loss": float(first["loss"]),
    }))


def run_child(case_key, jit, variant):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    if variant == "onednn":
        env["TF_ENABLE_ONEDNN_OPTS"] = "1"
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.startup_bench", "--child", case_key,
         "--jit", jit, "--variants", variant],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
    if done.returncode or not lines:
        return {"error": done.stderr[-1500:], "process_s": wall}
    result = json.loads(lines[-1])
    result["process_s"] = wall
    return result


def train_help_time():
    script = os.path.join(REPO_ROOT, "experiments", "train.py")
    if not os.path.exists(script):
        return None
    start = time.perf_counter()
    done = subprocess.run([sys.executable, script, "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    return {"case": "experiments/train.py --help", "process_s":
            time.perf_counter() - start, "returncode": done.returncode}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="dqn/nature/flatten1,rainbow/impala/softmoe4")
    parser.add_argument("--jit", default="graph,xla")
    parser.add_argument("--variants", default="current,autograph_off")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.jit, args.variants)
        return None
    from benchmarks import common  # pylint: disable=g-import-not-at-top
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"Unknown variant {v!r}; choose from {list(VARIANTS)}.")
    samples = {}
    for _ in range(args.repeats):
        for case_key in filter(None, args.cases.split(",")):
            for jit in filter(None, args.jit.split(",")):
                for variant in variants:
                    load = os.getloadavg()[0]
                    result = run_child(case_key, jit, variant)
                    result["load"] = load
                    samples.setdefault((case_key, jit, variant), []).append(result)
                    print(case_key, jit, variant, result, flush=True)
    rows = []
    for (case_key, jit, variant), results in samples.items():
        good = [r for r in results if "error" not in r]
        row = {"case": case_key, "jit": jit, "variant": variant,
               "repeats": len(results)}
        if good:
            for key in ("import_s", "build_s", "first_step_s", "second_step_s",
                        "process_s", "load"):
                row[key] = statistics.median(r[key] for r in good)
            row["first_loss"] = good[0]["first_loss"]
        else:
            row["error"] = results[-1]["error"][-300:]
        rows.append(row)
    helper = train_help_time()
    if helper:
        rows.append(helper)
    common.print_table(rows, ["case", "jit", "variant", "import_s", "build_s",
                              "first_step_s", "second_step_s", "process_s",
                              "first_loss", "load", "error"])
    common.write_json(args.json, "startup_bench", rows, settings=vars(args))
    return rows


if __name__ == "__main__":
    main()
