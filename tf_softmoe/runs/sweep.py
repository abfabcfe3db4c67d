"""A sweep: conditions x games x seeds, planned, estimated and scheduled.

Every run is one `RunUnit`: a self-contained, resumable unit described by
its config (flag file + game + seed + pass-through train flags) and its run
directory `<sweep_root>/<condition>/<game>/seed_<seed>`. Running a unit is

    python experiments/train.py --flagfile=<condition>.flags --game=<game> \\
        --seed=<seed> --root_dir=<run_dir> [extra flags]

(`RunUnit.command`, paths relative to the repository root), which resumes
from the run directory's newest checkpoint. A unit whose metrics.csv has a
row for every iteration and whose policy/ is exported is finished
(`RunDirectory.status`) and is never run again.

`plan_runs` turns a grid into units, `estimate_compute` says what the
unfinished ones cost, and `Scheduler` hands them to a backend
(`tf_softmoe.runs.backends`) and reports what became of them.
"""

import collections
import dataclasses
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

from tf_softmoe import _files
from tf_softmoe.runs import conditions
from tf_softmoe.runs import run_directory

SWEEP_FILE = "sweep.json"
CONDITION_FLAGFILE = "condition.flags"
# Memory of a training process besides its replay buffer (TensorFlow,
# networks, optimiser state, environment), in bytes.
PROCESS_OVERHEAD_BYTES = 2 * 1024**3


def run_dir_for(sweep_root, condition, game, seed):
    """The run directory of one cell of a sweep."""
    return os.path.join(sweep_root, condition, game, f"seed_{seed}")


def existing_run_directories(sweep_root):
    """(condition, game, seed, run_dir) of every `run_dir_for` directory
    present under `sweep_root`, sorted; nothing if it is missing."""
    if not os.path.isdir(sweep_root):
        return
    for condition in sorted(os.listdir(sweep_root)):
        condition_dir = os.path.join(sweep_root, condition)
        if not os.path.isdir(condition_dir):
            continue
        for game in sorted(os.listdir(condition_dir)):
            game_dir = os.path.join(condition_dir, game)
            if not os.path.isdir(game_dir):
                continue
            for seed_dir in sorted(os.listdir(game_dir)):
                if seed_dir.startswith("seed_") and seed_dir[5:].isdigit():
                    yield condition, game, int(seed_dir[5:]), os.path.join(game_dir, seed_dir)


@dataclasses.dataclass
class RunUnit:
    """One (condition, game, seed) of a sweep: what a backend runs.

    It is plain data (picklable), so a backend may ship it to another
    process or machine; everything a run needs is its command and its run
    directory, on storage the worker sees.

    Attributes:
      condition: the condition's name.
      flagfile: the condition's flag file.
      game: the game (its ALE name).
      seed: the seed.
      run_dir: the run directory.
      extra_flags: train flags given to every run of the sweep.
      num_iterations, steps_per_iteration: the run's schedule.
      replay_bytes: memory of its replay buffer (for resource requests).
      status: the run directory's state when last read (`refresh`).
    """
    condition: str
    flagfile: str
    game: str
    seed: int
    run_dir: str
    extra_flags: tuple
    num_iterations: int
    steps_per_iteration: int
    replay_bytes: int
    status: run_directory.RunStatus = dataclasses.field(
        default_factory=lambda: run_directory.RunStatus(run_directory.NEW))

    @property
    def run_directory(self):
        return run_directory.RunDirectory(self.run_dir)

    @property
    def log_path(self):
        return self.run_directory.train_log_path

    @property
    def memory_bytes(self):
        """Memory the run's process needs: its replay plus TensorFlow."""
        return self.replay_bytes + PROCESS_OVERHEAD_BYTES

    @property
    def total_steps(self):
        return self.num_iterations * self.steps_per_iteration

    @property
    def remaining_steps(self):
        if self.status.state == run_directory.FINISHED:
            return 0
        return max(0, self.total_steps - self.status.agent_steps)

    @property
    def label(self):
        return f"{self.condition} {self.game} seed {self.seed}"

    def train_argv(self, absolute_run_dir=False):
        """The train binary's arguments, with paths relative to the
        repository root where they lie inside it (the run directory absolute
        with `absolute_run_dir`: a worker elsewhere runs in its own copy of
        the repository but writes to the shared run directory)."""
        run_dir = (os.path.abspath(self.run_dir) if absolute_run_dir
                   else conditions.repo_relative(self.run_dir))
        return conditions.train_argv(conditions.repo_relative(self.flagfile), self.game,
                                     self.seed, run_dir, self.extra_flags)

    def command(self, python=sys.executable, absolute_run_dir=False):
        """The run's argv, to be run with the repository root as working
        directory (`conditions.REPO_ROOT`)."""
        return ([python, conditions.repo_relative(conditions.TRAIN_SCRIPT)]
                + self.train_argv(absolute_run_dir))

    def refresh(self):
        """Re-reads the run directory's state."""
        self.status = self.run_directory.status(self.num_iterations)
        return self.status


def plan_runs(sweep_root, flagfiles, games, seeds, extra_flags=()):
    """Resolves every run's config and reads its directory's state.

    Args:
      sweep_root: the directory all runs go under.
      flagfiles: flag-file paths, one per condition.
      games: game names (as given; each resolved to its ALE name).
      seeds: integer seeds.
      extra_flags: train flags for every run.

    Returns:
      A list of `RunUnit`, ordered seed-major (all conditions and games of
      seed 0 first) so a partial sweep covers every cell with some seeds.

    Raises:
      ValueError: for an invalid flag file, game or pass-through flag.
    """
    from tf_softmoe.replay import FrameReplayBuffer  # pylint: disable=import-outside-toplevel
    extra_flags = tuple(extra_flags)
    conditions.check_extra_flags(extra_flags)
    names = [conditions.condition_name(path) for path in flagfiles]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Conditions {duplicates} are given twice.")
    units = []
    for seed in seeds:
        for flagfile, name in zip(flagfiles, names):
            for game in games:
                config = conditions.config_for(flagfile, game, seed, extra_flags)
                unit = RunUnit(
                    condition=name, flagfile=flagfile, game=config.game, seed=seed,
                    run_dir=run_dir_for(sweep_root, name, config.game, seed),
                    extra_flags=extra_flags,
                    num_iterations=config.schedule.num_iterations,
                    steps_per_iteration=config.schedule.steps_per_iteration,
                    replay_bytes=FrameReplayBuffer.estimate_nbytes(
                        config.agent.replay_capacity,
                        prioritized=config.agent.prioritized))
                unit.refresh()
                units.append(unit)
    return units


def write_sweep_file(sweep_root, units, extra_flags):
    """Records the sweep's runs in <sweep_root>/sweep.json (merged with any
    earlier sweep into the same root) and copies each condition's flag file
    to <sweep_root>/<condition>/condition.flags."""
    os.makedirs(sweep_root, exist_ok=True)
    path = os.path.join(sweep_root, SWEEP_FILE)
    record = read_sweep_file(sweep_root) or {"runs": {}}
    for unit in units:
        key = os.path.relpath(unit.run_dir, sweep_root)
        record["runs"][key] = {
            "condition": unit.condition, "game": unit.game, "seed": unit.seed,
            "flagfile": conditions.repo_relative(unit.flagfile),
            "extra_flags": list(extra_flags),
            "num_iterations": unit.num_iterations,
            "steps_per_iteration": unit.steps_per_iteration}
        condition_dir = os.path.join(sweep_root, unit.condition)
        os.makedirs(condition_dir, exist_ok=True)
        shutil.copyfile(unit.flagfile, os.path.join(condition_dir, CONDITION_FLAGFILE))
    _files.atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True))
    return path


def read_sweep_file(sweep_root):
    """<sweep_root>/sweep.json as a dict, or None if it is absent.

    Raises:
      ValueError: it is not a sweep record (the message names the file).
    """
    path = os.path.join(sweep_root, SWEEP_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path} is unreadable or not JSON ({error}); delete it: "
                         "the next sweep into this root writes it again.") from error
    if not isinstance(record, dict) or not isinstance(record.get("runs"), dict):
        raise ValueError(f"{path} is not a sweep record (no 'runs' mapping); delete it: "
                         "the next sweep into this root writes it again.")
    return record


# ---------------------------------------------------------------------------
# Resources and compute estimates.


def available_memory_bytes():
    """MemAvailable of /proc/meminfo (total physical memory elsewhere)."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            lines = handle.readlines()
    except OSError:  # not Linux: no MemAvailable to read
        return physical
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return physical


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_workers(units, cores=None, memory_bytes=None):
    """min(cores // 2, memory // largest run's memory), at least 1: a
    training process keeps about two cores busy (environment + learner)."""
    cores = available_cores() if cores is None else cores
    memory_bytes = available_memory_bytes() if memory_bytes is None else memory_bytes
    per_run = max([unit.replay_bytes for unit in units] + [0]) + PROCESS_OVERHEAD_BYTES
    return max(1, min(cores // 2, int(memory_bytes // per_run)))


def _float(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return value if math.isfinite(value) else float("nan")


def measured_rates(roots):
    """Agent steps per second per condition, from metrics.csv files.

    Looks for <root>/<condition>/<game>/seed_<s>/metrics.csv under each root
    and takes the median `train_steps_per_second` over the iterations after
    the first (the first holds the replay warm-up and the graph tracing) of
    all runs of a condition, or over all iterations when runs have only one.

    Returns:
      {condition: steps per second}.
    """
    later, first = collections.defaultdict(list), collections.defaultdict(list)
    for root in roots:
        for condition, _, _, run_dir in existing_run_directories(root):
            rows = run_directory.RunDirectory(run_dir).metrics_rows()
            for index, row in enumerate(rows):
                rate = _float(row.get("train_steps_per_second"))
                if rate > 0:
                    (later if index else first)[condition].append(rate)
    return {condition: statistics.median(later.get(condition) or first[condition])
            for condition in set(later) | set(first)}


def probe_rate(flagfile, game, extra_flags=(), steps=400, python=sys.executable,
               log=print):
    """Measures a condition's agent steps per second with a short run.

    Two iterations of `steps` agent steps in a temporary directory: the
    first fills the replay to steps // 2 and traces the graphs, the second
    only learns; its `train_steps_per_second` is the answer. The replay
    holds 4 * steps transitions, so the probe needs little memory.

    Returns:
      Agent steps per second, or NaN if the probe failed (its log is
      passed to `log`).
    """
    steps = max(64, int(steps))
    with tempfile.TemporaryDirectory(prefix="sweep_probe_") as root_dir:
        unit = RunUnit(
            condition=conditions.condition_name(flagfile), flagfile=flagfile, game=game,
            seed=0, run_dir=root_dir, num_iterations=2, steps_per_iteration=steps,
            replay_bytes=0, extra_flags=tuple(extra_flags) + (
                "--num_iterations=2", f"--steps_per_iteration={steps}",
                f"--min_replay_history={steps // 2}", f"--replay_capacity={4 * steps}",
                "--eval_episodes=0"))
        log(f"  probing {unit.condition} on {game}: {steps} + {steps} agent steps ...")
        result = subprocess.run(unit.command(python), capture_output=True, text=True,
                                check=False, cwd=conditions.REPO_ROOT)
        rows = unit.run_directory.metrics_rows()
        if result.returncode != 0 or len(rows) < 2:
            log(f"  probe failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
            return float("nan")
        return _float(rows[1].get("train_steps_per_second"))


@dataclasses.dataclass
class Estimate:
    """Compute a sweep still needs.

    Attributes:
      agent_steps: agent steps of the unfinished runs.
      run_seconds: one worker, all runs back to back.
      wall_seconds: with the given workers.
      unknown_runs: runs without any rate.
      rates: {condition: steps/s used}.
      sources: {condition: "measured", "assumed" or "unknown"}.
    """
    agent_steps: int
    run_seconds: float
    wall_seconds: float
    unknown_runs: int
    rates: Dict[str, float]
    sources: Dict[str, str]


def estimate_compute(units, rates, workers, startup_seconds=60.0, fallback_rate=None):
    """Seconds the unfinished runs need at the given rates.

    Args:
      units: `RunUnit`s of the plan.
      rates: {condition: agent steps per second}.
      workers: parallel workers.
      startup_seconds: added per run started (process start, tracing,
        export).
      fallback_rate: rate of conditions missing from `rates` (e.g. a
        --steps_per_second given on the command line); None: the median of
        `rates`, or unknown when `rates` is empty.

    Returns:
      An `Estimate`. With several workers the wall time is the larger of
      total / workers and the longest run (the usual list-scheduling bound).
    """
    known = [r for r in rates.values() if r > 0 and math.isfinite(r)]
    if fallback_rate is None and known:
        fallback_rate = statistics.median(known)
    used, sources = {}, {}
    total_seconds, longest, unknown, steps = 0.0, 0.0, 0, 0
    for unit in units:
        if unit.status.state == run_directory.FINISHED:
            continue
        steps += unit.remaining_steps
        rate = rates.get(unit.condition)
        if rate is not None and rate > 0 and math.isfinite(rate):
            sources[unit.condition] = "measured"
        elif fallback_rate:
            rate = fallback_rate
            sources.setdefault(unit.condition, "assumed")
        else:
            unknown += 1
            sources.setdefault(unit.condition, "unknown")
            continue
        used[unit.condition] = rate
        seconds = unit.remaining_steps / rate + startup_seconds
        total_seconds += seconds
        longest = max(longest, seconds)
    wall = max(total_seconds / max(1, workers), longest)
    return Estimate(agent_steps=steps, run_seconds=total_seconds, wall_seconds=wall,
                    unknown_runs=unknown, rates=used, sources=sources)


def format_duration(seconds):
    """"1d2h03m", "2h03m" or "4m05s"; "?" for a non-finite time."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600}h{rest % 3600 // 60:02d}m"
    if days:
        text = f"{days}d" + text
    elif seconds < 3600:
        text = f"{seconds // 60}m{seconds % 60:02d}s"
    return text


def describe_plan(units, workers, estimate, measured=None):
    """The plan as lines of text: runs per condition and state, compute.

    Args:
      units, workers, estimate: the plan, its workers, its `Estimate`.
      measured: {condition: steps/s} measured, shown also for conditions
        with nothing left to run.
    """
    measured = measured or {}
    by_condition = collections.OrderedDict()
    for unit in units:
        by_condition.setdefault(unit.condition, collections.Counter())[unit.status.state] += 1
    games = sorted({unit.game for unit in units})
    seeds = sorted({unit.seed for unit in units})
    lines = [f"Plan: {len(by_condition)} conditions x {len(games)} games x {len(seeds)} "
             f"seeds = {len(units)} runs, {workers} worker(s).",
             f"  games: {', '.join(games)}",
             f"  seeds: {', '.join(map(str, seeds))}"]
    width = max(len(name) for name in by_condition)
    lines.append(f"  {'condition':<{width}}  finished  partial  new  steps/s (source)")
    for name, counts in by_condition.items():
        rate = estimate.rates.get(name)
        if rate:
            rate_text = f"{rate:.1f} ({estimate.sources.get(name, '')})"
        elif measured.get(name, 0) > 0:
            rate_text = f"{measured[name]:.1f} (measured)"
        else:
            rate_text = estimate.sources.get(name, "-")
        lines.append(f"  {name:<{width}}  {counts[run_directory.FINISHED]:>8}  "
                     f"{counts[run_directory.PARTIAL]:>7}  {counts[run_directory.NEW]:>3}  "
                     f"{rate_text}")
    pending = [unit for unit in units if unit.status.state != run_directory.FINISHED]
    lines.append(f"Remaining: {len(pending)} runs, {estimate.agent_steps:,} agent steps "
                 f"({4 * estimate.agent_steps:,} frames).")
    if estimate.unknown_runs:
        lines.append(f"Compute: unknown for {estimate.unknown_runs} runs (no measured "
                     "rate): add --probe_steps=400, --steps_per_second=RATE or "
                     "--rates_from=DIR.")
    if estimate.rates:
        lines.append(
            f"Compute: {format_duration(estimate.run_seconds)} of single-worker time "
            f"({estimate.run_seconds / 3600:.1f} run-hours), about "
            f"{format_duration(estimate.wall_seconds)} wall time with {workers} "
            "worker(s).")
    return lines


def display_command(unit):
    """A unit's command as one would type it from the repository root."""
    return " ".join(unit.command(python="python"))


# ---------------------------------------------------------------------------
# Scheduling.


@dataclasses.dataclass
class Outcome:
    """What became of one run a backend ran.

    Attributes:
      unit: the `RunUnit` (its status re-read after the run).
      returncode: the training process's exit status (None if unknown).
      seconds: wall time from submission to the end.
    """
    unit: RunUnit
    returncode: Optional[int]
    seconds: float

    @property
    def finished(self):
        return self.unit.status.state == run_directory.FINISHED

    def describe(self):
        if self.finished:
            return f"finished in {format_duration(self.seconds)}"
        return (f"stopped (exit {self.returncode}, {self.unit.status.iterations}/"
                f"{self.unit.num_iterations} iterations); log: {self.unit.log_path}")


class Scheduler:
    """Hands the unfinished units of a plan to a backend and collects them.

    Finished units are skipped. Units are submitted while the backend has
    room (`Backend.max_in_flight`; None: all at once), in plan order. On
    SIGINT / SIGTERM (or `request_stop`) no further unit is submitted and
    every running one is cancelled with that signal, which makes its
    training process write a checkpoint and exit; running the same sweep
    again resumes them.

    Every `progress_seconds` while runs are going it prints a progress
    table (`progress_lines`): runs done, failed, running and pending; each
    running run's iteration (and its evaluation games, while it plays
    them), agent steps and steps/s, read from the
    progress.json its training process rewrites with each of its progress
    lines (so they are as fresh as the run's `progress_seconds`); and the
    sweep's ETA. It reads only the run directories, so it works the same
    for any backend whose runs write to storage the driver sees.

    Args:
      units: the `RunUnit`s.
      backend: a `backends.base.Backend`.
      poll_seconds: how long one `Backend.poll` may wait.
      out: where progress lines go.
      progress_seconds: seconds between progress tables (30; 0: none).
      clock: seconds, monotonic (default `time.monotonic`; tests pass a fake).
    """

    def __init__(self, units, backend, poll_seconds=1.0, out=print,
                 progress_seconds=30.0, clock=time.monotonic):
        if not progress_seconds >= 0:
            raise ValueError(f"progress_seconds must be >= 0 (0: no progress table), "
                             f"got {progress_seconds}.")
        self.units = list(units)
        self.backend = backend
        self.poll_seconds = poll_seconds
        self.out = out
        self.progress_seconds = progress_seconds
        self.clock = clock
        self.stop_signal = None
        self._active = []
        self._pending = collections.deque()
        self._outcomes = []
        self._skipped = 0

    def request_stop(self, signum):
        """Stops submitting and cancels the running units with `signum`."""
        self.stop_signal = signum
        for handle in list(self._active):
            self.backend.cancel(handle, signum)

    def _on_signal(self, signum, _frame):
        self.out(f"Signal {signum}: forwarding it to {len(self._active)} running "
                 "run(s); they write a checkpoint and stop. Re-run to resume.")
        self.request_stop(signum)

    def _room(self):
        limit = self.backend.max_in_flight
        return limit is None or len(self._active) < limit

    def run(self, handle_signals=True) -> List[Outcome]:
        """Runs the plan; returns the `Outcome` of every unit started."""
        previous = {}
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    previous[signum] = signal.signal(signum, self._on_signal)
                except ValueError:  # not the main thread
                    break
        pending = self._pending = collections.deque(
            unit for unit in self.units if unit.refresh().state != run_directory.FINISHED)
        skipped = self._skipped = len(self.units) - len(pending)
        if skipped:
            self.out(f"Skipping {skipped} finished run(s).")
        outcomes = self._outcomes = []
        total = len(pending)
        next_table = (self.clock() + self.progress_seconds if self.progress_seconds
                      else math.inf)
        try:
            while pending or self._active:
                while self.stop_signal is None and pending and self._room():
                    unit = pending.popleft()
                    verb = "resuming" if unit.status.state == run_directory.PARTIAL else "starting"
                    self.out(f"[{len(outcomes) + len(self._active) + 1}/{total}] {verb} "
                             f"{unit.label}")
                    self._active.append(self.backend.submit(unit))
                if not self._active:
                    break
                for handle, code in self.backend.poll(list(self._active),
                                                      self.poll_seconds):
                    self._active.remove(handle)
                    handle.unit.refresh()
                    outcome = Outcome(handle.unit, code, time.time() - handle.submitted)
                    outcomes.append(outcome)
                    self.out(f"  {handle.unit.label}: {outcome.describe()}")
                if self._active and self.clock() >= next_table:
                    for line in self.progress_lines():
                        self.out(line)
                    next_table = self.clock() + self.progress_seconds
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return outcomes


    def progress_lines(self):
        """The progress table as lines of text.

        The ETA is the agent steps left in the running and pending runs over
        the running runs' summed steps/s: it assumes as many runs keep
        running at those rates, and adds no start-up time ("?" until a
        running run has reported a rate).
        """
        done = self._skipped + sum(outcome.finished for outcome in self._outcomes)
        failed = sum(not outcome.finished for outcome in self._outcomes)
        running = [handle.unit for handle in self._active]
        rows, total_rate, steps_left = [], 0.0, 0
        for unit in running:
            progress = unit.run_directory.read_progress() or {}
            iteration = progress.get("iteration")
            agent_steps = progress.get("agent_steps")
            rate = _float(progress.get("steps_per_second"))
            if isinstance(agent_steps, int):
                steps_left += max(0, unit.total_steps - agent_steps)
            else:
                steps_left += unit.remaining_steps
            if rate > 0:
                total_rate += rate
            where = (f"{iteration + 1}/{unit.num_iterations}"
                     if isinstance(iteration, int) else "-")
            if progress.get("phase") == "evaluation":
                where += (f" eval {progress.get('eval_games', '?')}/"
                          f"{progress.get('eval_episodes', '?')}")
                if progress.get("eval_steps"):
                    # In 100 environments the games end together, late: the
                    # steps show it moving.
                    where += f" ({progress['eval_steps']:,} steps)"
            rows.append((unit.label, where,
                         f"{agent_steps:,}" if isinstance(agent_steps, int) else "-",
                         f"{rate:.1f}" if rate > 0 else "-"))
        steps_left += sum(unit.remaining_steps for unit in self._pending)
        eta = steps_left / total_rate if total_rate > 0 else float("nan")
        lines = [f"Sweep: {done} done, {failed} failed, {len(running)} running, "
                 f"{len(self._pending)} pending; {steps_left:,} agent steps left, "
                 f"ETA {format_duration(eta)}"]
        if rows:
            width = max(len("run"), *(len(row[0]) for row in rows))
            cell = max(len("iteration"), *(len(row[1]) for row in rows))
            lines.append(f"  {'run':<{width}}  {'iteration':>{cell}}  "
                         f"{'agent steps':>12}  steps/s")
            lines.extend(f"  {label:<{width}}  {iteration:>{cell}}  {steps:>12}  "
                         f"{rate:>7}" for label, iteration, steps, rate in rows)
        return lines


__all__ = ["Estimate", "Outcome", "RunUnit", "Scheduler", "default_workers",
           "describe_plan", "display_command", "estimate_compute",
           "existing_run_directories", "measured_rates", "plan_runs", "probe_rate",
           "read_sweep_file", "run_dir_for", "write_sweep_file"]


def rates_for(flagfiles, roots, probe_game=None, extra_flags=(), probe_steps=0,
              log=print):
    """Measured agent steps/s per condition: `measured_rates(roots)`, plus a
    `probe_rate` run on `probe_game` for each condition without one when
    `probe_steps` > 0."""
    rates = measured_rates(roots)
    if probe_steps > 0:
        for flagfile in flagfiles:
            name = conditions.condition_name(flagfile)
            if name not in rates:
                rates[name] = probe_rate(flagfile, probe_game, extra_flags,
                                         steps=probe_steps, log=log)
    return rates


def unfinished_commands(units):
    """Lines listing the command of every unfinished unit (none if all are
    finished)."""
    pending = [unit for unit in units if unit.status.state != "finished"]
    return (["Commands of the unfinished runs:"] if pending else []) + [
        "  " + display_command(unit) for unit in pending]


def run_units(units, backend, sweep_root, progress_seconds=30.0, out=print):
    """Runs `units` on `backend` (closing it at the end) and reports them.

    Prints, after the scheduler's own lines, how many runs finished and the
    run directory and log of each that did not.

    Returns:
      The sweep's exit status: 0 when every run finished, 128 + signal when
      a signal stopped the sweep, else 1.
    """
    with backend:
        scheduler = Scheduler(units, backend, out=out, progress_seconds=progress_seconds)
        outcomes = scheduler.run()
    finished = sum(unit.status.state == "finished" for unit in units)
    out(f"Sweep: {finished}/{len(units)} runs finished under {sweep_root}.")
    for outcome in outcomes:
        if not outcome.finished:
            out(f"  unfinished: {outcome.unit.run_dir} (log: {outcome.unit.log_path})")
    if scheduler.stop_signal is not None:
        return 128 + scheduler.stop_signal
    return 0 if finished == len(units) else 1
