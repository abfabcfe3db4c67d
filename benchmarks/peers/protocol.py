"""Line protocol between the benchmark driver and a peer worker process.

The driver starts `<venv>/bin/python -m benchmarks.peers.<peer>` from the
repository root and writes one JSON request per line on its stdin; the
worker answers each with one JSON line on the protocol stream (the process's
original stdout; everything the libraries print goes to stderr instead).

Requests:
  {"op": "info"}                          → versions and thread counts
  {"op": "build", "key": K, "case": C}     → builds the case, runs the first
      step (tracing/compilation) and answers build_s, first_step_s, params
  {"op": "time", "key": K, "steps": N}     → N timed steps: wall_ms, cpu_ms
  {"op": "drop", "key": K}                 → frees the case
Errors come back as {"ok": false, "error": "..."}; the worker keeps going.
Standard-library only: both sides import it.
"""

import json
import os
import subprocess
import sys
import time
import traceback

# Set by the driver: the number of threads every implementation may use
# ("0" or unset: each library's default).
THREADS_ENV = "TF_SOFTMOE_BENCH_THREADS"


def requested_threads():
    """The thread count the driver asked for, or 0 for the default."""
    return int(os.environ.get(THREADS_ENV, "0") or 0)


def xla_cpu_flags(threads):
    """XLA_FLAGS that keep XLA:CPU (JAX) to one thread when `threads == 1`."""
    if threads != 1:
        return os.environ.get("XLA_FLAGS", "")
    return (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
            " intra_op_parallelism_threads=1").strip()


def timed_steps(step, steps):
    """Runs `step()` `steps` times; per-step wall and process-CPU ms."""
    wall, cpu = [], []
    for _ in range(steps):
        w0, c0 = time.perf_counter(), time.process_time()
        step()
        cpu.append((time.process_time() - c0) * 1e3)
        wall.append((time.perf_counter() - w0) * 1e3)
    return wall, cpu


def serve(builder, info):
    """Worker main loop.

    Args:
      builder: `builder(case) -> (step_fn, num_params)`; `step_fn()` runs one
        full train step and returns only when its results are on the host.
      info: dict describing the peer (versions, threads), sent on "info".
    """
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library prints must not corrupt the protocol stream
    sys.stdout = sys.stderr
    steps = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            op = request["op"]
            if op == "info":
                answer = dict(info)
            elif op == "build":
                start = time.perf_counter()
                step, params = builder(request["case"])
                built = time.perf_counter()
                step()
                answer = {"build_s": built - start,
                          "first_step_s": time.perf_counter() - built,
                          "params": params}
                steps[request["key"]] = step
            elif op == "time":
                wall, cpu = timed_steps(steps[request["key"]], request["steps"])
                answer = {"wall_ms": wall, "cpu_ms": cpu}
            elif op == "drop":
                steps.pop(request["key"], None)
                answer = {}
            else:
                raise ValueError(f"unknown op {op!r}")
            answer["ok"] = True
        except Exception as error:  # reported to the driver, worker goes on
            answer = {"ok": False,
                      "error": f"{type(error).__name__}: {error}",
                      "traceback": traceback.format_exc()[-4000:]}
        protocol.write(json.dumps(answer) + "\n")


class PeerProcess:
    """Driver side: one worker process in its own virtual environment.

    Args:
      name: label of the peer in the results.
      python: the venv's python executable.
      module: worker module, e.g. "benchmarks.peers.torch_peer".
      args: extra command-line arguments of the worker.
      cwd: the repository root (so `benchmarks` imports).
      env: extra environment variables.
      log_path: where the worker's stderr goes.
    """

    def __init__(self, name, python, module, args=(), cwd=".", env=None,
                 log_path=None):
        self.name = name
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONPATH"] = os.path.abspath(cwd)
        self._log = open(log_path or os.devnull, "a")
        self._proc = subprocess.Popen(
            [python, "-m", module, *args], cwd=cwd, env=full_env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            text=True, bufsize=1)

    def send(self, **message):
        """Sends one request without waiting (pair with `receive`)."""
        if self._proc.poll() is None:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()

    def receive(self):
        """Waits for the answer to the oldest unanswered request (a dict)."""
        line = self._proc.stdout.readline() if self._proc.poll() is None else ""
        if not line:
            self._proc.wait()
            return {"ok": False, "error": f"{self.name} worker exited with "
                    f"code {self._proc.returncode}"}
        return json.loads(line)

    def request(self, **message):
        """Sends one request and waits for its answer (a dict)."""
        self.send(**message)
        return self.receive()

    def close(self):
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
