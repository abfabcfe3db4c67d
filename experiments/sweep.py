r"""Runs a grid of conditions x games x seeds with local worker processes.

Every run is one call of the train binary,

    python experiments/train.py --flagfile=<condition>.flags --game=<game> \
        --seed=<seed> --root_dir=<sweep_root>/<condition>/<game>/seed_<seed> \
        [flags given after `--`]

started as a subprocess whose output goes to `train.log` in its run
directory. The sweep is resumable: a run whose metrics.csv has a row for
every iteration and whose policy/ is exported is skipped; any other run is
(re)started, and the train binary resumes it from its newest checkpoint.
SIGINT / SIGTERM to the sweep is forwarded to every running child, which
finishes its step, writes a checkpoint and exits; re-running the same
command then carries on.

Examples:

    # A paper figure (experiments/configs/figures/<name>.ini): its conditions,
    # games and seeds. --dry_run prints the plan and the compute it needs.
    python experiments/sweep.py --figure=fig01_experts_and_scale \
        --sweep_root=runs/fig01 --dry_run

    # Any conditions (flag-file names or paths), games and seeds, with
    # train flags passed through after `--`:
    python experiments/sweep.py --sweep_root=runs/demo \
        --conditions=rainbow_impala_flatten_x4,rainbow_impala_softmoe4 \
        --games=Breakout,Qbert --seeds=0,1 -- --num_iterations=2 \
        --steps_per_iteration=500

Default number of workers: min(cores // 2, available memory // memory of the
largest run), at least 1. A run's memory is its replay buffer (frames stored
once: ~7 KB per transition, 7.2 GB at 1 M) plus ~2 GB for TensorFlow; a
training process keeps about two cores busy (environment + learner). On a
GPU machine all workers share the accelerator: set --workers yourself.

Compute estimate (--dry_run): remaining agent steps of every run divided by
a measured rate in agent steps per second: the median `train_steps_per_second`
of finished iterations in the metrics.csv files under the sweep root (and
--rates_from), per condition; or a short probe run per condition
(--probe_steps); or --steps_per_second. Each run start adds --startup_seconds
(TensorFlow start, graph tracing, the final export).
"""

import argparse
import collections
import configparser
import csv
import dataclasses
import functools
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

CONFIG_DIR = os.path.join(REPO_ROOT, "experiments", "configs")
FIGURE_DIR = os.path.join(CONFIG_DIR, "figures")
GAME_SET_DIR = os.path.join(CONFIG_DIR, "games")
TRAIN_SCRIPT = os.path.join(REPO_ROOT, "experiments", "train.py")
FLAGFILE_SUFFIX = ".flags"
SWEEP_FILE = "sweep.json"
RUN_LOG = "train.log"
METRICS_FILE = "metrics.csv"
# Flags the sweep sets for every run; a flag file or the pass-through flags
# may not set them.
RUN_FLAGS = ("game", "seed", "root_dir", "flagfile")
# Memory of a training process besides its replay buffer (TensorFlow,
# networks, optimiser state, environment), in bytes.
PROCESS_OVERHEAD_BYTES = 2 * 1024**3
_CHECKPOINT_NAME = re.compile(r"^ckpt-(\d+)$")


# ---------------------------------------------------------------------------
# Conditions, game sets and figures.


def condition_name(flagfile):
    """The condition a flag file defines: its file name without `.flags`."""
    name = os.path.basename(flagfile)
    return name[:-len(FLAGFILE_SUFFIX)] if name.endswith(FLAGFILE_SUFFIX) else name


def all_flagfiles(config_dir=CONFIG_DIR):
    """Sorted paths of every `*.flags` file in `config_dir`."""
    return sorted(os.path.join(config_dir, name) for name in os.listdir(config_dir)
                  if name.endswith(FLAGFILE_SUFFIX))


def find_flagfile(name_or_path, config_dir=CONFIG_DIR):
    """The path of a condition's flag file.

    Args:
      name_or_path: a condition name ("rainbow_impala_softmoe4", with or
        without ".flags") looked up in `config_dir`, or a path to a file.
      config_dir: where named conditions live.

    Returns:
      An absolute path.

    Raises:
      FileNotFoundError: naming close condition names.
    """
    if os.path.isfile(name_or_path):
        return os.path.abspath(name_or_path)
    name = condition_name(name_or_path)
    path = os.path.join(config_dir, name + FLAGFILE_SUFFIX)
    if os.path.isfile(path):
        return path
    known = [condition_name(p) for p in all_flagfiles(config_dir)]
    import difflib  # pylint: disable=import-outside-toplevel
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = (f"Did you mean {', '.join(close)}?" if close else
            f"See the {len(known)} flag files in {config_dir}.")
    raise FileNotFoundError(f"No condition {name_or_path!r}: neither a file nor "
                            f"{path}. {hint}")


def _read_list_file(path):
    """Non-empty, non-comment lines of a text file."""
    with open(path) as handle:
        return [line.strip() for line in handle
                if line.strip() and not line.lstrip().startswith("#")]


def game_sets(game_set_dir=GAME_SET_DIR):
    """{name: [games]} of the game lists in experiments/configs/games/."""
    return {name[:-4]: _read_list_file(os.path.join(game_set_dir, name))
            for name in sorted(os.listdir(game_set_dir)) if name.endswith(".txt")}


def parse_games(spec, game_set_dir=GAME_SET_DIR):
    """Games of a comma-separated list of game names and game-set names.

    "atari20" expands to the 20-game list, "Pong,Breakout" is two games,
    "atari20,Alien" is 21. Duplicates are dropped, order kept.
    """
    sets = game_sets(game_set_dir)
    games = []
    for item in split_list(spec):
        for game in sets.get(item, [item]):
            if game not in games:
                games.append(game)
    if not games:
        raise ValueError("No games given: pass --games=Pong,Breakout or a game set "
                         f"({', '.join(sets)}).")
    return games


def parse_seeds(spec):
    """Seeds of "0,1,2" or "0-4" (inclusive ranges), as a sorted list."""
    seeds = set()
    for item in split_list(spec):
        match = re.fullmatch(r"(\d+)-(\d+)", item)
        if match:
            low, high = int(match.group(1)), int(match.group(2))
            if high < low:
                raise ValueError(f"Seed range {item!r} runs backwards; write {high}-{low}.")
            seeds.update(range(low, high + 1))
        elif item.isdigit():
            seeds.add(int(item))
        else:
            raise ValueError(f"Bad seed {item!r}: use integers >= 0 such as "
                             "--seeds=0,1,2 or --seeds=0-4.")
    if not seeds:
        raise ValueError("No seeds given: pass --seeds=0,1,2 or --seeds=0-4.")
    return sorted(seeds)


def split_list(spec):
    """Items of "a, b,c" (or of a sequence), stripped, empty ones dropped."""
    if isinstance(spec, str):
        return [item.strip() for item in spec.split(",") if item.strip()]
    return [str(item).strip() for item in spec if str(item).strip()]


@dataclasses.dataclass(frozen=True)
class Figure:
    """A figure of the paper: the conditions, games and seeds it needs.

    Attributes:
      name: the file name without ".ini".
      title: what the figure compares.
      paper: where it is in the paper and what the paper reports.
      conditions: condition names (flag files in experiments/configs/).
      games: game names or game-set names (see `parse_games`).
      seeds: seed list ("0-4").
      baseline: the condition probabilities of improvement are taken against.
      plots: which plots the paper shows (free text for the reader).
    """

    name: str
    title: str
    paper: str
    conditions: tuple
    games: str
    seeds: str
    baseline: Optional[str]
    plots: str


def figure_names(figure_dir=FIGURE_DIR):
    return sorted(name[:-4] for name in os.listdir(figure_dir) if name.endswith(".ini"))


def load_figure(name, figure_dir=FIGURE_DIR):
    """Reads experiments/configs/figures/<name>.ini.

    Raises:
      FileNotFoundError: for an unknown figure (the message lists them).
      ValueError: for a figure file without conditions or with an unknown
        condition.
    """
    path = name if name.endswith(".ini") and os.path.isfile(name) else os.path.join(
        figure_dir, name + ".ini")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No figure {name!r} ({path}); figures: "
                                f"{', '.join(figure_names(figure_dir))}.")
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    if "figure" not in parser:
        raise ValueError(f"{path} has no [figure] section.")
    section = parser["figure"]
    conditions = tuple(split_list(section.get("conditions", "").replace("\n", ",")))
    if not conditions:
        raise ValueError(f"{path} lists no conditions.")
    for condition in conditions:
        find_flagfile(condition)
    baseline = section.get("baseline") or None
    if baseline is not None and baseline not in conditions:
        raise ValueError(f"{path}: baseline {baseline!r} is not one of its conditions.")
    return Figure(name=os.path.basename(path)[:-4], title=section.get("title", ""),
                  paper=" ".join(section.get("paper", "").split()),
                  conditions=conditions, games=section.get("games", "atari20"),
                  seeds=section.get("seeds", "0-4"), baseline=baseline,
                  plots=" ".join(section.get("plots", "").split()))


# ---------------------------------------------------------------------------
# Turning a run's flags into its ExperimentConfig (the train binary's rules).


def _check_extra_flags(extra_flags):
    for flag in extra_flags:
        name = flag.lstrip("-").split("=", 1)[0]
        if name.startswith("no") and name[2:] in RUN_FLAGS:
            name = name[2:]
        if not flag.startswith("-") or name in RUN_FLAGS:
            raise ValueError(
                f"Pass-through flag {flag!r} is not allowed: the sweep sets "
                f"--{', --'.join(RUN_FLAGS)} for every run, and only --name=value "
                "train flags may follow `--`.")


def train_argv(flagfile, game, seed, root_dir, extra_flags=()):
    """The train binary's arguments for one run (without the program)."""
    return [f"--flagfile={flagfile}", f"--game={game}", f"--seed={seed}",
            f"--root_dir={root_dir}"] + list(extra_flags)


def resolve_config(flagfile, game="Pong", seed=0, root_dir="unused", extra_flags=()):
    """The `ExperimentConfig` experiments/train.py would build for a run.

    Parses the arguments with the train binary's flag definitions
    (experiments/flag_defs.py) in this process, then resets those flags to
    their defaults, so it can be called for many runs in a row.

    Args:
      flagfile: path of the condition's flag file.
      game, seed, root_dir: the run's values.
      extra_flags: further "--name=value" train flags (they override the flag
        file).

    Returns:
      The `ExperimentConfig`.

    Raises:
      ValueError: an unknown flag, a bad value or an invalid combination; the
        message names the flag file.
    """
    from absl import flags  # pylint: disable=import-outside-toplevel
    from experiments import flag_defs  # pylint: disable=import-outside-toplevel
    _check_extra_flags(extra_flags)
    _check_flagfile_leaves_run_flags(flagfile)
    argv = ["train.py"] + train_argv(flagfile, game, seed, root_dir, extra_flags)
    fv = flag_defs.FLAGS
    fv.unparse_flags()
    try:
        leftover = fv(argv, known_only=False)
        if len(leftover) > 1:
            raise ValueError(f"unexpected arguments {leftover[1:]}")
        return flag_defs.experiment_config_from_flags()
    except (flags.Error, ValueError) as error:
        raise ValueError(f"{flagfile} (with --game={game} --seed={seed} "
                         f"{' '.join(extra_flags)}): {error}") from error
    finally:
        fv.unparse_flags()


def _check_flagfile_leaves_run_flags(flagfile):
    for line in _read_list_file(flagfile):
        name = line.lstrip("-").split("=", 1)[0]
        if name in RUN_FLAGS:
            raise ValueError(
                f"{flagfile} sets --{name}; a condition's flag file must leave "
                f"--{', --'.join(RUN_FLAGS)} to the sweep (or the command line).")


# ---------------------------------------------------------------------------
# Run directories and their state.


@dataclasses.dataclass
class RunStatus:
    """How far a run directory is.

    Attributes:
      state: "finished" (a metrics row for every iteration and the exported
        policy), "partial" (something written: it resumes) or "new".
      iterations: metrics rows written.
      agent_steps: agent steps done (newest checkpoint or metrics row).
    """
    state: str
    iterations: int = 0
    agent_steps: int = 0


def read_metrics_rows(path):
    """The rows of a metrics.csv as dicts ([] if it does not exist)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def run_status(run_dir, num_iterations):
    """The `RunStatus` of a run directory for a schedule of `num_iterations`."""
    if not os.path.isdir(run_dir):
        return RunStatus("new")
    rows = read_metrics_rows(os.path.join(run_dir, METRICS_FILE))
    agent_steps = max([_int(row.get("agent_steps")) for row in rows] + [0])
    checkpoint_dir = os.path.join(run_dir, "checkpoints")
    if os.path.isdir(checkpoint_dir):
        for name in os.listdir(checkpoint_dir):
            match = _CHECKPOINT_NAME.match(name)
            if match:
                agent_steps = max(agent_steps, int(match.group(1)))
    exported = os.path.isfile(os.path.join(run_dir, "policy", "saved_model.pb"))
    if len(rows) >= num_iterations and exported:
        return RunStatus("finished", len(rows), agent_steps)
    written = rows or agent_steps or os.path.exists(os.path.join(run_dir, "config.json"))
    return RunStatus("partial" if written else "new", len(rows), agent_steps)


def _int(value):
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


@dataclasses.dataclass
class Run:
    """One (condition, game, seed) of a sweep."""
    condition: str
    flagfile: str
    game: str
    seed: int
    run_dir: str
    extra_flags: tuple
    num_iterations: int
    steps_per_iteration: int
    replay_bytes: int
    status: RunStatus = dataclasses.field(default_factory=lambda: RunStatus("new"))

    @property
    def total_steps(self):
        return self.num_iterations * self.steps_per_iteration

    @property
    def remaining_steps(self):
        if self.status.state == "finished":
            return 0
        return max(0, self.total_steps - self.status.agent_steps)

    def command(self, python=sys.executable):
        return [python, TRAIN_SCRIPT] + train_argv(self.flagfile, self.game, self.seed,
                                                   self.run_dir, self.extra_flags)

    def refresh(self):
        self.status = run_status(self.run_dir, self.num_iterations)
        return self.status


def run_directory(sweep_root, condition, game, seed):
    return os.path.join(sweep_root, condition, game, f"seed_{seed}")


def existing_run_directories(sweep_root):
    """(condition, game, seed, run_dir) of every `run_directory` layout
    directory present under `sweep_root`, sorted; nothing if it is missing."""
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


def plan_runs(sweep_root, flagfiles, games, seeds, extra_flags=()):
    """Resolves every run's config and reads its directory's state.

    Args:
      sweep_root: the directory all runs go under.
      flagfiles: flag-file paths, one per condition.
      games: game names (as given; each resolved to its ALE name).
      seeds: integer seeds.
      extra_flags: train flags for every run.

    Returns:
      A list of `Run`, ordered seed-major (all conditions and games of seed 0
      first) so a partial sweep covers every cell with some seeds.

    Raises:
      ValueError: for an invalid flag file, game or pass-through flag.
    """
    from tf_softmoe.replay import FrameReplayBuffer  # pylint: disable=import-outside-toplevel
    extra_flags = tuple(extra_flags)
    _check_extra_flags(extra_flags)
    names = [condition_name(path) for path in flagfiles]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Conditions {duplicates} are given twice.")
    runs = []
    for seed in seeds:
        for flagfile in flagfiles:
            for game in games:
                config = resolve_config(flagfile, game, seed, "unused", extra_flags)
                run_dir = run_directory(sweep_root, condition_name(flagfile), config.game,
                                        seed)
                replay_bytes = FrameReplayBuffer.estimate_nbytes(
                    config.agent.replay_capacity, prioritized=config.agent.prioritized)
                run = Run(condition=condition_name(flagfile), flagfile=flagfile,
                          game=config.game, seed=seed, run_dir=run_dir,
                          extra_flags=extra_flags,
                          num_iterations=config.schedule.num_iterations,
                          steps_per_iteration=config.schedule.steps_per_iteration,
                          replay_bytes=replay_bytes)
                run.refresh()
                runs.append(run)
    return runs


# ---------------------------------------------------------------------------
# Resources and compute estimates.


def available_memory_bytes():
    """MemAvailable of /proc/meminfo (total physical memory elsewhere)."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/proc/meminfo") as handle:
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


def default_workers(runs, cores=None, memory_bytes=None):
    """min(cores // 2, memory // largest run's memory), at least 1."""
    cores = available_cores() if cores is None else cores
    memory_bytes = available_memory_bytes() if memory_bytes is None else memory_bytes
    per_run = max([run.replay_bytes for run in runs] + [0]) + PROCESS_OVERHEAD_BYTES
    return max(1, min(cores // 2, int(memory_bytes // per_run)))


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
            rows = read_metrics_rows(os.path.join(run_dir, METRICS_FILE))
            for index, row in enumerate(rows):
                rate = _float(row.get("train_steps_per_second"))
                if rate > 0:
                    (later if index else first)[condition].append(rate)
    rates = {}
    for condition in set(later) | set(first):
        values = later.get(condition) or first[condition]
        rates[condition] = statistics.median(values)
    return rates


def _float(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return value if math.isfinite(value) else float("nan")


def probe_rate(flagfile, game, extra_flags=(), steps=400, python=sys.executable,
               log=print):
    """Measures a condition's agent steps per second with a short run.

    Two iterations of `steps` agent steps in a temporary directory: the
    first fills the replay to steps // 2 and traces the graphs, the second
    only learns; its `train_steps_per_second` is the answer. The replay
    holds 4 * steps transitions, so the probe needs little memory.

    Returns:
      Agent steps per second, or NaN if the probe failed (its log is
      printed).
    """
    steps = max(64, int(steps))
    with tempfile.TemporaryDirectory(prefix="sweep_probe_") as root_dir:
        probe_flags = list(extra_flags) + [
            "--num_iterations=2", f"--steps_per_iteration={steps}",
            f"--min_replay_history={steps // 2}", f"--replay_capacity={4 * steps}",
            "--eval_episodes=0"]
        command = [python, TRAIN_SCRIPT] + train_argv(flagfile, game, 0, root_dir,
                                                      probe_flags)
        log(f"  probing {condition_name(flagfile)} on {game}: {steps} + {steps} "
            "agent steps ...")
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        rows = read_metrics_rows(os.path.join(root_dir, METRICS_FILE))
        if result.returncode != 0 or len(rows) < 2:
            log(f"  probe failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
            return float("nan")
        return _float(rows[1].get("train_steps_per_second"))


@dataclasses.dataclass
class Estimate:
    """Compute a sweep still needs."""
    agent_steps: int
    run_seconds: float          # one worker, all runs back to back
    wall_seconds: float         # with `workers` workers
    unknown_runs: int           # runs without any rate
    rates: Dict[str, float]
    sources: Dict[str, str]


def estimate_compute(runs, rates, workers, startup_seconds=60.0, fallback_rate=None):
    """Seconds the unfinished runs need at the given rates.

    Args:
      runs: `Run`s of the plan.
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
    for run in runs:
        if run.status.state == "finished":
            continue
        steps += run.remaining_steps
        rate = rates.get(run.condition)
        if rate is not None and rate > 0 and math.isfinite(rate):
            sources[run.condition] = "measured"
        elif fallback_rate:
            rate = fallback_rate
            sources.setdefault(run.condition, "assumed")
        else:
            unknown += 1
            sources.setdefault(run.condition, "unknown")
            continue
        used[run.condition] = rate
        seconds = run.remaining_steps / rate + startup_seconds
        total_seconds += seconds
        longest = max(longest, seconds)
    wall = max(total_seconds / max(1, workers), longest)
    return Estimate(agent_steps=steps, run_seconds=total_seconds, wall_seconds=wall,
                    unknown_runs=unknown, rates=used, sources=sources)


def format_duration(seconds):
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


def describe_plan(runs, workers, estimate, out=print, measured=None):
    """Prints the plan: runs per condition and state, the compute needed.

    Args:
      runs, workers, estimate: the plan, its workers, its `Estimate`.
      out: print function.
      measured: {condition: steps/s} measured, shown also for conditions
        with nothing left to run.
    """
    measured = measured or {}
    by_condition = collections.OrderedDict()
    for run in runs:
        by_condition.setdefault(run.condition, collections.Counter())[run.status.state] += 1
    games = sorted({run.game for run in runs})
    seeds = sorted({run.seed for run in runs})
    out(f"Plan: {len(by_condition)} conditions x {len(games)} games x {len(seeds)} "
        f"seeds = {len(runs)} runs, {workers} worker(s).")
    out(f"  games: {', '.join(games)}")
    out(f"  seeds: {', '.join(map(str, seeds))}")
    width = max(len(name) for name in by_condition)
    out(f"  {'condition':<{width}}  finished  partial  new  steps/s (source)")
    for name, counts in by_condition.items():
        rate = estimate.rates.get(name)
        if rate:
            rate_text = f"{rate:.1f} ({estimate.sources.get(name, '')})"
        elif measured.get(name, 0) > 0:
            rate_text = f"{measured[name]:.1f} (measured)"
        else:
            rate_text = estimate.sources.get(name, "-")
        out(f"  {name:<{width}}  {counts['finished']:>8}  {counts['partial']:>7}  "
            f"{counts['new']:>3}  {rate_text}")
    pending = [run for run in runs if run.status.state != "finished"]
    out(f"Remaining: {len(pending)} runs, {estimate.agent_steps:,} agent steps "
        f"({4 * estimate.agent_steps:,} frames).")
    if estimate.unknown_runs:
        out(f"Compute: unknown for {estimate.unknown_runs} runs (no measured rate): "
            "add --probe_steps=400, --steps_per_second=RATE or --rates_from=DIR.")
    if estimate.rates:
        out(f"Compute: {format_duration(estimate.run_seconds)} of single-worker time "
            f"({estimate.run_seconds / 3600:.1f} run-hours), about "
            f"{format_duration(estimate.wall_seconds)} wall time with {workers} "
            "worker(s).")


# ---------------------------------------------------------------------------
# Running.


def launch_subprocess(run, log_path):
    """Starts a run's train binary with its output appended to `log_path`.

    The child gets its own session, so a terminal's Ctrl-C reaches it only
    through the sweep (once).
    """
    os.makedirs(run.run_dir, exist_ok=True)
    log = open(log_path, "a")  # pylint: disable=consider-using-with
    command = run.command()
    log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} sweep starts: "
              f"{' '.join(command)}\n")
    log.flush()
    try:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=REPO_ROOT, start_new_session=True)
    finally:
        log.close()
    return process


@dataclasses.dataclass
class Outcome:
    run: Run
    returncode: Optional[int]
    seconds: float


class Sweep:
    """Runs the unfinished runs of a plan with `workers` child processes.

    Args:
      runs: the `Run`s (finished ones are skipped).
      workers: how many run at once.
      launch: function (run, log_path) -> a process with poll(),
        send_signal(signum) and wait(); `launch_subprocess` by default
        (tests pass a fake).
      poll_seconds: how often children are polled.
      out: where progress lines go.
    """

    def __init__(self, runs, workers=1, launch=launch_subprocess, poll_seconds=1.0,
                 out=print):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}.")
        self.runs = list(runs)
        self.workers = workers
        self.launch = launch
        self.poll_seconds = poll_seconds
        self.out = out
        self.stop_signal = None
        self._active = {}

    def request_stop(self, signum):
        """Stops launching runs and forwards `signum` to the running ones."""
        self.stop_signal = signum
        for process, _ in list(self._active.values()):
            try:
                process.send_signal(signum)
            except (ProcessLookupError, OSError):
                continue

    def _on_signal(self, signum, _frame):
        self.out(f"Signal {signum}: forwarding it to {len(self._active)} running "
                 "run(s); they write a checkpoint and stop. Re-run to resume.")
        self.request_stop(signum)

    def run(self, handle_signals=True):
        """Runs the plan; returns the list of `Outcome` of the runs started."""
        previous = {}
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    previous[signum] = signal.signal(signum, self._on_signal)
                except ValueError:  # not the main thread
                    break
        pending = collections.deque(r for r in self.runs
                                    if r.refresh().state != "finished")
        skipped = len(self.runs) - len(pending)
        if skipped:
            self.out(f"Skipping {skipped} finished run(s).")
        outcomes, total = [], len(pending)
        try:
            while pending or self._active:
                while (self.stop_signal is None and pending
                       and len(self._active) < self.workers):
                    run = pending.popleft()
                    verb = "resuming" if run.status.state == "partial" else "starting"
                    self.out(f"[{len(outcomes) + len(self._active) + 1}/{total}] {verb} "
                             f"{run.condition} {run.game} seed {run.seed}")
                    process = self.launch(run, os.path.join(run.run_dir, RUN_LOG))
                    self._active[id(process)] = (process, (run, time.time()))
                for key, (process, (run, started)) in list(self._active.items()):
                    code = process.poll()
                    if code is None:
                        continue
                    del self._active[key]
                    run.refresh()
                    outcome = Outcome(run, code, time.time() - started)
                    outcomes.append(outcome)
                    self.out(f"  {run.condition} {run.game} seed {run.seed}: "
                             f"{self._describe(outcome)}")
                if self._active or (pending and self.stop_signal is None):
                    time.sleep(self.poll_seconds)
                elif self.stop_signal is not None:
                    break
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return outcomes

    @staticmethod
    def _describe(outcome):
        state = outcome.run.status.state
        if state == "finished":
            return f"finished in {format_duration(outcome.seconds)}"
        log = os.path.join(outcome.run.run_dir, RUN_LOG)
        return (f"stopped (exit {outcome.returncode}, {outcome.run.status.iterations}/"
                f"{outcome.run.num_iterations} iterations); log: {log}")


def write_sweep_file(sweep_root, runs, extra_flags):
    """Records the sweep's runs in <sweep_root>/sweep.json (merged with any
    earlier sweep into the same root) and copies each condition's flag file
    to <sweep_root>/<condition>/condition.flags."""
    os.makedirs(sweep_root, exist_ok=True)
    path = os.path.join(sweep_root, SWEEP_FILE)
    record = {"runs": {}}
    if os.path.isfile(path):
        with open(path) as handle:
            record = json.load(handle)
    for run in runs:
        key = os.path.relpath(run.run_dir, sweep_root)
        record["runs"][key] = {
            "condition": run.condition, "game": run.game, "seed": run.seed,
            "flagfile": os.path.relpath(run.flagfile, REPO_ROOT)
            if run.flagfile.startswith(REPO_ROOT) else run.flagfile,
            "extra_flags": list(extra_flags),
            "num_iterations": run.num_iterations,
            "steps_per_iteration": run.steps_per_iteration}
        condition_dir = os.path.join(sweep_root, run.condition)
        os.makedirs(condition_dir, exist_ok=True)
        shutil.copyfile(run.flagfile, os.path.join(condition_dir, "condition.flags"))
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(record, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------
# Command line.


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Train flags after `--` go to every run (e.g. -- --num_iterations=2). "
               f"Figures: {', '.join(figure_names())}.")
    parser.add_argument("--sweep_root", required=True,
                        help="Directory of the sweep: <root>/<condition>/<game>/seed_<s>.")
    parser.add_argument("--figure", help="A figure of experiments/configs/figures/ "
                        "(sets conditions, games and seeds).")
    parser.add_argument("--conditions", help="Comma-separated condition names or flag-"
                        "file paths (instead of, or replacing, the figure's).")
    parser.add_argument("--games", help="Comma-separated games and game sets "
                        f"({', '.join(game_sets())}); default: the figure's.")
    parser.add_argument("--seeds", help="Seeds, '0,1,2' or '0-4'; default: the "
                        "figure's, else 0-4.")
    parser.add_argument("--workers", type=int, default=None,
                        help="Parallel runs (default: min(cores // 2, memory // "
                        "largest run), at least 1).")
    parser.add_argument("--dry_run", action="store_true",
                        help="Print the plan and its compute estimate; run nothing.")
    parser.add_argument("--probe_steps", type=int, default=0,
                        help="With --dry_run: measure each condition without a "
                        "measured rate by a 2 x N-step probe run (0: no probe).")
    parser.add_argument("--steps_per_second", type=float, default=None,
                        help="Agent steps/s to assume for conditions without a "
                        "measured rate.")
    parser.add_argument("--rates_from", default="",
                        help="Comma-separated sweep roots whose metrics.csv rates "
                        "count as measured too.")
    parser.add_argument("--startup_seconds", type=float, default=60.0,
                        help="Seconds added per run started (process start, graph "
                        "tracing, export).")
    parser.add_argument("train_flags", nargs="*", help=argparse.SUPPRESS)
    return parser


def display_command(run):
    """A run's command as one would type it from the repository root."""
    def short(path):
        relative = os.path.relpath(path, REPO_ROOT)
        return path if relative.startswith("..") else relative
    argv = train_argv(short(run.flagfile), run.game, run.seed, short(run.run_dir),
                      run.extra_flags)
    return " ".join(["python", short(TRAIN_SCRIPT)] + argv)


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = functools.partial(print, flush=True)
    try:
        figure = load_figure(args.figure) if args.figure else None
        if args.conditions:
            flagfiles = [find_flagfile(name) for name in split_list(args.conditions)]
        elif figure:
            flagfiles = [find_flagfile(name) for name in figure.conditions]
        else:
            raise ValueError("give --figure=NAME or --conditions=a,b,c (figures: "
                             f"{', '.join(figure_names())}).")
        games = parse_games(args.games or (figure.games if figure else "atari20"))
        seeds = parse_seeds(args.seeds or (figure.seeds if figure else "0-4"))
        sweep_root = os.path.abspath(args.sweep_root)
        extra_flags = tuple(args.train_flags)
        runs = plan_runs(sweep_root, flagfiles, games, seeds, extra_flags)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from error
    workers = args.workers or default_workers(runs)
    if figure:
        out(f"Figure {figure.name}: {figure.title}\n  paper: {figure.paper}")
    roots = [sweep_root] + [os.path.abspath(p) for p in split_list(args.rates_from)]
    rates = measured_rates(roots)
    if args.dry_run and args.probe_steps > 0:
        for flagfile in flagfiles:
            name = condition_name(flagfile)
            if name not in rates:
                rates[name] = probe_rate(flagfile, games[0], extra_flags,
                                         steps=args.probe_steps, log=out)
    estimate = estimate_compute(runs, rates, workers, args.startup_seconds,
                                fallback_rate=args.steps_per_second)
    describe_plan(runs, workers, estimate, out=out, measured=rates)
    if args.dry_run:
        pending = [run for run in runs if run.status.state != "finished"]
        if pending:
            out("Commands of the unfinished runs:")
        for run in pending:
            out("  " + display_command(run))
        return 0
    write_sweep_file(sweep_root, runs, extra_flags)
    sweep = Sweep(runs, workers=workers, out=out)
    outcomes = sweep.run()
    finished = sum(run.status.state == "finished" for run in runs)
    out(f"Sweep: {finished}/{len(runs)} runs finished under {sweep_root}.")
    for outcome in outcomes:
        if outcome.run.status.state != "finished":
            out(f"  unfinished: {outcome.run.run_dir} (log: {RUN_LOG} there)")
    if sweep.stop_signal is not None:
        return 128 + sweep.stop_signal
    return 0 if finished == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
