"""The Ray backend: one Ray task per run, on a local Ray or a Ray cluster.

Each `RunUnit` becomes one Ray task with declared resources (CPUs, a
possibly fractional GPU share, the run's memory). The task starts the train
command as a child process of the Ray worker, in the repository root the
worker sees (`worker_repo_root`: the installed checkout, or the copy Ray
ships as `runtime_env` working_dir), with its output appended
to the run's train.log, and returns the child's exit status.

Faults:
- A worker or node that dies takes its child with it (PR_SET_PDEATHSIG,
  SIGTERM: the child checkpoints first); Ray retries the task
  (`max_retries`), and the retry waits for the old child to let go of the
  run directory's lock before it resumes from the newest checkpoint.
- A run that fails on its own (bad flags, a crash) returns its exit status:
  Ray does not retry it (no `retry_exceptions`), the scheduler reports it.
- `cancel` writes a stop file into the run directory and calls `ray.cancel`
  without force, which raises KeyboardInterrupt in the task; on either the
  task SIGTERMs the child (it finishes its step, checkpoints, exits)
  and waits for it. The task polls the child rather than blocking in
  `wait()`, so the interrupt is delivered.

The task's functions travel to the workers by value (they import nothing
of tf_softmoe), so a Ray worker does not import TensorFlow: only the
training process does.

Runs never depend on the driver: they write only to their run directory,
which on a cluster must be on storage every node sees
(`check_shared_storage`).
"""

import contextlib
import ctypes
import fcntl
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

from tf_softmoe.runs import conditions
from tf_softmoe.runs.backends import base

INSTALL_HINT = "pip install -e '.[ray]'"
# Written by the task into the run directory: where and how often it ran.
TASK_FILE = "ray_task.json"
# Held by the task and its training process; a retry waits for it.
LOCK_FILE = ".ray_run.lock"
# Written by `RayBackend.cancel` into the run directory (shared storage):
# the task stops its run when it sees it, should ray.cancel's interrupt be
# late or lost (once it had not arrived 8 s after the cancel).
STOP_FILE = ".ray_stop"
# What a working_dir shipped to a cluster leaves out (gitignore syntax).
WORKING_DIR_EXCLUDES = (".git/", ".venv/", "runs/", "bazel-*", "**/__pycache__/",
                        "*.egg-info/", ".pytest_cache/")
_PR_SET_PDEATHSIG = 1


def import_ray():
    """The `ray` module, or an ImportError that says how to install it."""
    try:
        import ray  # pylint: disable=import-outside-toplevel
    except ImportError as error:
        raise ImportError(f"--backend=ray needs Ray: {INSTALL_HINT} "
                          f"(import ray failed: {error}).") from error
    return ray


def _die_with_parent(parent_pid):
    """A preexec_fn: the child gets SIGTERM (and checkpoints) when the
    worker that started it dies, so a retry never runs beside it."""
    def set_death_signal():
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent_pid:  # the worker died before prctl
            os._exit(128 + signal.SIGTERM)  # pylint: disable=protected-access
    return set_death_signal


def _record_attempt(run_dir, child_pid):
    path = os.path.join(run_dir, TASK_FILE)
    record = {"attempts": 0}
    with contextlib.suppress(OSError, ValueError):
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    record.update(attempts=int(record.get("attempts", 0)) + 1, node=socket.gethostname(),
                  worker_pid=os.getpid(), child_pid=child_pid, started=time.time())
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(record, handle)


def _lock_run_directory(run_dir, log, poll_seconds):
    """Opens and exclusively locks the run's lock file, waiting while a
    training process of an earlier attempt still holds it."""
    handle = open(os.path.join(run_dir, LOCK_FILE), "a", encoding="utf-8")  # pylint: disable=consider-using-with
    waited = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if not waited:
                log.write("ray task: waiting for the training process of an earlier "
                          "attempt to exit\n")
                log.flush()
                waited = True
            time.sleep(poll_seconds)


def worker_repo_root():
    """The repository root a worker runs the train command in: the parent of
    the `tf_softmoe` package its interpreter finds (the working_dir Ray
    shipped, an installed checkout or the driver's), located without
    importing it."""
    spec = importlib.util.find_spec("tf_softmoe")
    if spec is None or not spec.origin:
        raise ImportError(f"The Ray worker on {socket.gethostname()} cannot find the "
                          "tf_softmoe package: install it on every node "
                          f"({INSTALL_HINT}) or let the sweep ship the repository "
                          "as the runtime_env working_dir.")
    return os.path.dirname(os.path.dirname(os.path.abspath(spec.origin)))


def run_unit(command, run_dir, log_path, env, poll_seconds=0.5):
    """The body of a run's Ray task (it runs in the Ray worker).

    Args:
      command: the train argv after the interpreter (paths relative to the
        repository root, the run directory absolute).
      run_dir: the run directory.
      log_path: where the child's stdout and stderr are appended.
      env: environment variables added to the worker's for the child.
      poll_seconds: how often the child is polled.

    Returns:
      The child's exit status (128 + signal when it stopped on a signal,
      negative when it was killed).
    """
    os.makedirs(run_dir, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        lock = _lock_run_directory(run_dir, log, poll_seconds)
        argv = [sys.executable] + list(command)
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} ray task starts on "
                  f"{socket.gethostname()} (worker pid {os.getpid()}): "
                  f"{' '.join(argv)}\n")
        log.flush()
        with lock:
            # A stop request of an earlier, cancelled submission.
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(run_dir, STOP_FILE))
            child = subprocess.Popen(  # pylint: disable=consider-using-with,subprocess-popen-preexec-fn
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=worker_repo_root(),
                env=dict(os.environ, **env), pass_fds=(lock.fileno(),),
                start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))
            _record_attempt(run_dir, child.pid)
            stop_path = os.path.join(run_dir, STOP_FILE)
            stopping = False
            while True:
                try:
                    code = child.poll()
                    if code is not None:
                        return code
                    if not stopping and os.path.exists(stop_path):
                        raise KeyboardInterrupt
                    time.sleep(poll_seconds)
                except KeyboardInterrupt:  # cancelled: the run checkpoints
                    if not stopping:
                        log.write("ray task: cancelled; sending SIGTERM to the "
                                  "training process\n")
                        log.flush()
                        child.send_signal(signal.SIGTERM)
                        stopping = True


def read_token_on_node(path):
    """(hostname, the file's text or an error message): the body of the
    shared-storage probe task."""
    try:
        with open(path, encoding="utf-8") as handle:
            return socket.gethostname(), handle.read()
    except OSError as error:
        return socket.gethostname(), f"unreadable ({error})"


def check_shared_storage(sweep_root, node_ids, read_on_node):
    """Refuses a sweep root that some node of the cluster does not see.

    A token file with random content is written under `sweep_root` and each
    node must read it back.

    Args:
      sweep_root: the sweep's root directory (it exists).
      node_ids: the alive nodes.
      read_on_node: function (node_id, path) -> (hostname, text read).

    Raises:
      ValueError: naming the root and the nodes that do not see it.
    """
    token = uuid.uuid4().hex
    path = os.path.join(sweep_root, f".ray_storage_check_{token}")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(token)
    try:
        blind = []
        for node_id in node_ids:
            host, text = read_on_node(node_id, path)
            if text != token:
                blind.append(f"{host} (node {node_id}: {text[:80] or 'empty'})")
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
    if blind:
        raise ValueError(
            f"The sweep root {sweep_root} is not visible from every Ray node: "
            f"{'; '.join(blind)} cannot read a file written there by the driver. "
            "On a cluster the sweep root must be shared storage that every node "
            "mounts at the same path (NFS, a cluster filesystem, ...): pass "
            "--sweep_root=<a directory on it>.")


class RayBackend(base.Backend):
    """Runs each unit as a Ray task, on a local Ray or an existing cluster.

    Args:
      sweep_root: the sweep's root directory; on a cluster it is checked to
        be shared storage (`check_shared_storage`).
      address: None to start a local Ray instance (unless RAY_ADDRESS is
        set, as under `ray job submit`); "auto" or "ray://host:port" to
        connect to a running cluster.
      num_cpus: CPUs of a local Ray instance (None: all of this machine's).
      cpus_per_run: CPUs each run's task declares (> 0).
      gpus_per_run: GPUs each run's task declares (>= 0; a fraction packs
        several runs on a GPU, with TensorFlow's memory growth on).
      max_retries: how often a task is retried after its worker or node
        died (>= 0). A run that fails by itself is never retried.
      include_dashboard: start Ray's dashboard with a local instance.
      working_dir: the code shipped to the cluster's workers as
        runtime_env working_dir: "auto" ships the repository root when
        connecting to a cluster outside `ray job submit` (which ships its
        own --working-dir), None never ships (the package is installed on
        every node), a path ships that directory.
      max_in_flight: at most this many runs at once (None: Ray queues them
        by their declared resources).
      poll_seconds: how often a task polls its training process.
      ray_module: the `ray` module (tests may pass a fake).
    """

    def __init__(self, sweep_root, address=None, num_cpus=None, cpus_per_run=1.0,
                 gpus_per_run=0.0, max_retries=3, include_dashboard=False,
                 working_dir="auto", max_in_flight=None, poll_seconds=0.5,
                 ray_module=None):
        check_resources(cpus_per_run, gpus_per_run, max_retries, num_cpus)
        self.ray = ray_module or import_ray()
        self.sweep_root = os.path.abspath(sweep_root)
        self.cpus_per_run, self.gpus_per_run = float(cpus_per_run), float(gpus_per_run)
        self.max_retries = int(max_retries)
        self.max_in_flight = max_in_flight
        self.poll_seconds = poll_seconds
        self._cancelled = {}
        self._launched = []
        address = address or os.environ.get("RAY_ADDRESS") or None
        self.started_ray = address is None
        init_args = {"logging_level": "WARNING"}
        if self.started_ray:
            init_args.update(num_cpus=num_cpus, include_dashboard=include_dashboard)
        else:
            init_args["address"] = address
            if working_dir == "auto":
                under_job = bool(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"))
                working_dir = None if under_job else conditions.REPO_ROOT
            if working_dir:
                init_args["runtime_env"] = {"working_dir": working_dir,
                                            "excludes": list(WORKING_DIR_EXCLUDES)}
        if self.ray.is_initialized():
            # A Ray this process already joined (a notebook, a test) is used
            # as it is, and left running.
            self.started_ray = False
        else:
            self.ray.init(**init_args)
        self.ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        self._task = self.ray.remote(run_unit)
        try:
            if "address" in init_args:
                self._check_cluster_storage()
        except BaseException:
            self.ray.shutdown()
            raise

    def _alive_nodes(self):
        return [node for node in self.ray.nodes() if node.get("Alive")]

    def _check_cluster_storage(self):
        # pylint: disable=import-outside-toplevel
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        reader = self.ray.remote(read_token_on_node)

        def read_on_node(node_id, path):
            strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
            return self.ray.get(reader.options(num_cpus=0, scheduling_strategy=strategy)
                                .remote(path), timeout=300)

        check_shared_storage(self.sweep_root,
                             [node["NodeID"] for node in self._alive_nodes()], read_on_node)

    def _check_fits(self, unit):
        """Refuses a unit no alive node can hold (Ray would queue it forever)."""
        nodes = [node.get("Resources", {}) for node in self._alive_nodes()]
        wanted = {"CPU": self.cpus_per_run, "GPU": self.gpus_per_run,
                  "memory": float(unit.memory_bytes)}
        if nodes and not any(all(node.get(key, 0.0) >= value for key, value in wanted.items()
                                 if value > 0) for node in nodes):
            biggest = {key: max(node.get(key, 0.0) for node in nodes) for key in wanted}
            raise ValueError(
                f"No Ray node can run {unit.label}: it needs {self.cpus_per_run:g} CPU, "
                f"{self.gpus_per_run:g} GPU and {unit.memory_bytes / 1024**3:.1f} GiB of "
                f"memory (replay + TensorFlow); the largest node has "
                f"{biggest['CPU']:g} CPU, {biggest['GPU']:g} GPU, "
                f"{biggest['memory'] / 1024**3:.1f} GiB. Lower --cpus_per_run / "
                "--gpus_per_run or --replay_capacity, or add larger nodes.")

    def child_environment(self):
        """Variables the task adds to the training process's environment."""
        env = {"PYTHONUNBUFFERED": "1"}
        if self.gpus_per_run % 1:
            # Several runs share a GPU: each takes memory as it needs it
            # instead of all of it at start-up.
            env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
        return env

    def submit(self, unit):
        self._check_fits(unit)
        unit.run_directory.create()
        command = unit.command(python=None, absolute_run_dir=True)[1:]
        ref = self._task.options(
            num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
            memory=int(unit.memory_bytes), max_retries=self.max_retries,
            retry_exceptions=False, name=f"tfsm {unit.label}",
        ).remote(command, os.path.abspath(unit.run_dir), unit.log_path,
                 self.child_environment(), self.poll_seconds)
        handle = base.RunHandle(unit, ref=ref)
        self._launched.append(handle)
        return handle

    def _result(self, handle):
        try:
            return self.ray.get(handle.ref)
        except self.ray.exceptions.TaskCancelledError:
            signum = self._cancelled.get(id(handle))
            return None if signum is None else 128 + signum
        except self.ray.exceptions.RayError as error:
            # Retries exhausted (worker or node lost) or the task itself
            # raised: the run did not end by itself.
            with contextlib.suppress(OSError):
                with open(handle.unit.log_path, "a", encoding="utf-8") as log:
                    log.write(f"\nray task failed: {error}\n")
            return None

    def poll(self, handles, timeout):
        if not handles:
            return []
        by_ref = {handle.ref: handle for handle in handles}
        ready, _ = self.ray.wait(list(by_ref), num_returns=len(by_ref),
                                 timeout=max(0.0, timeout))
        ended = [(by_ref[ref], self._result(by_ref[ref])) for ref in ready]
        done = {id(handle) for handle, _ in ended}
        self._launched = [h for h in self._launched if id(h) not in done]
        return ended

    def cancel(self, handle, signum=signal.SIGTERM):
        """Cancels the task; it SIGTERMs the training process (whatever
        `signum`: SIGINT and SIGTERM both make it checkpoint and exit)."""
        self._cancelled[id(handle)] = signum
        with contextlib.suppress(OSError):  # ray.cancel still applies
            with open(os.path.join(handle.unit.run_dir, STOP_FILE), "w",
                      encoding="utf-8") as stop:
                stop.write(f"cancelled by the sweep driver at {time.time()}\n")
        self.ray.cancel(handle.ref, force=False, recursive=False)

    def close(self):
        """Cancels the tasks still running (their runs checkpoint), waits for
        them, and shuts down a Ray instance this backend started."""
        try:
            running = [h for h in self._launched
                       if not self.ray.wait([h.ref], timeout=0)[0]]
            for handle in running:
                self.cancel(handle)
            for handle in running:
                self._result(handle)
        finally:
            self._launched = []
            if self.started_ray:
                self.ray.shutdown()


def check_resources(cpus_per_run=1.0, gpus_per_run=0.0, max_retries=3, num_cpus=None):
    """Raises ValueError naming the flag of a resource value out of range."""
    if not float(cpus_per_run) > 0:
        raise ValueError(f"--cpus_per_run must be > 0, got {cpus_per_run}.")
    if not float(gpus_per_run) >= 0:
        raise ValueError(f"--gpus_per_run must be >= 0, got {gpus_per_run}.")
    if float(gpus_per_run) > 1 and float(gpus_per_run) % 1:
        raise ValueError(f"--gpus_per_run above 1 must be whole, got {gpus_per_run} "
                         "(Ray packs fractions only below one GPU).")
    if int(max_retries) < 0:
        raise ValueError(f"--max_retries must be >= 0, got {max_retries}.")
    if num_cpus is not None and int(num_cpus) < 1:
        raise ValueError(f"the local Ray's CPUs must be >= 1, got {num_cpus}.")


__all__ = ["RayBackend", "check_resources", "check_shared_storage", "import_ray",
           "run_unit"]
