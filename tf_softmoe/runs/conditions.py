"""The paper's conditions, figures and game sets (experiments/configs/).

- A condition is a flag file `experiments/configs/<name>.flags` of train
  flags; a run of it adds --game, --seed and --root_dir (`RUN_FLAGS`).
- A figure is `experiments/configs/figures/<name>.ini`: its conditions,
  games, seeds and baseline.
- A game set is `experiments/configs/games/<name>.txt`: one game a line.

experiments/configs/ is found relative to the repository this package lives
in (the parent of the `tf_softmoe` package directory), which holds both for
a source checkout and for an editable install (`pip install -e .`).
"""

import configparser
import dataclasses
import difflib
import os
import re
from typing import Optional

import tf_softmoe

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(tf_softmoe.__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, "experiments", "configs")
FIGURE_DIR = os.path.join(CONFIG_DIR, "figures")
GAME_SET_DIR = os.path.join(CONFIG_DIR, "games")
TRAIN_SCRIPT = os.path.join(REPO_ROOT, "experiments", "train.py")
FLAGFILE_SUFFIX = ".flags"
# Flags the sweep sets for every run; a flag file or the pass-through flags
# may not set them.
RUN_FLAGS = ("game", "seed", "root_dir", "flagfile")


def _require_dir(directory):
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"{directory} does not exist. tf_softmoe.runs reads the conditions, "
            "figures and game sets of a source checkout: install the package from "
            "a clone with `pip install -e .` (not from a wheel), or pass the "
            "directory explicitly.")
    return directory


def repo_relative(path):
    """`path` relative to the repository root when it lies inside it, else
    absolute (what a run's command line uses)."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute, REPO_ROOT)
    return absolute if relative == ".." or relative.startswith(".." + os.sep) else relative


def split_list(spec):
    """Items of "a, b,c" (or of a sequence), stripped, empty ones dropped."""
    if isinstance(spec, str):
        return [item.strip() for item in spec.split(",") if item.strip()]
    return [str(item).strip() for item in spec if str(item).strip()]


def read_list_file(path):
    """Non-empty, non-comment lines of a text file."""
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle
                if line.strip() and not line.lstrip().startswith("#")]


# ---------------------------------------------------------------- conditions
def condition_name(flagfile):
    """The condition a flag file defines: its file name without `.flags`."""
    name = os.path.basename(flagfile)
    return name[:-len(FLAGFILE_SUFFIX)] if name.endswith(FLAGFILE_SUFFIX) else name


def all_flagfiles(config_dir=CONFIG_DIR):
    """Sorted paths of every `*.flags` file in `config_dir`."""
    _require_dir(config_dir)
    return sorted(os.path.join(config_dir, name) for name in os.listdir(config_dir)
                  if name.endswith(FLAGFILE_SUFFIX))


def find_flagfile(name_or_path, config_dir=CONFIG_DIR):
    """The absolute path of a condition's flag file.

    Args:
      name_or_path: a condition name ("rainbow_impala_softmoe4", with or
        without ".flags") looked up in `config_dir`, or a path to a file.
      config_dir: where named conditions live.

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
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = (f"Did you mean {', '.join(close)}?" if close else
            f"See the {len(known)} flag files in {config_dir}.")
    raise FileNotFoundError(f"No condition {name_or_path!r}: neither a file nor "
                            f"{path}. {hint}")


def check_extra_flags(extra_flags):
    """Refuses pass-through flags that are not --name=value train flags or
    that set one of `RUN_FLAGS`."""
    for flag in extra_flags:
        name = flag.lstrip("-").split("=", 1)[0]
        if name.startswith("no") and name[2:] in RUN_FLAGS:
            name = name[2:]
        if not flag.startswith("-") or name in RUN_FLAGS:
            raise ValueError(
                f"Pass-through flag {flag!r} is not allowed: the sweep sets "
                f"--{', --'.join(RUN_FLAGS)} for every run, and only --name=value "
                "train flags may follow `--`.")


def check_flagfile_leaves_run_flags(flagfile):
    """Refuses a flag file that sets one of `RUN_FLAGS`."""
    for line in read_list_file(flagfile):
        name = line.lstrip("-").split("=", 1)[0]
        if name in RUN_FLAGS:
            raise ValueError(
                f"{flagfile} sets --{name}; a condition's flag file must leave "
                f"--{', --'.join(RUN_FLAGS)} to the sweep (or the command line).")


def train_argv(flagfile, game, seed, root_dir, extra_flags=()):
    """The train binary's arguments for one run (without the program)."""
    return [f"--flagfile={flagfile}", f"--game={game}", f"--seed={seed}",
            f"--root_dir={root_dir}"] + list(extra_flags)


def config_for(flagfile, game="Pong", seed=0, extra_flags=()):
    """The `ExperimentConfig` the train binary builds for one run.

    The arguments are parsed with the train binary's flag definitions on a
    fresh `absl.flags.FlagValues`; the process's global flags are untouched.

    Args:
      flagfile: path of the condition's flag file.
      game, seed: the run's values.
      extra_flags: further "--name=value" train flags (they override the flag
        file).

    Raises:
      ValueError: an unknown flag, a bad value or an invalid combination; the
        message names the flag file.
    """
    # pylint: disable=import-outside-toplevel
    from absl import flags
    from tf_softmoe.cli import flags as flags_lib
    from tf_softmoe.cli import train
    # pylint: enable=import-outside-toplevel
    extra_flags = tuple(extra_flags)
    check_extra_flags(extra_flags)
    check_flagfile_leaves_run_flags(flagfile)
    flag_values = flags.FlagValues()
    train.define_flags(flag_values)
    argv = ["train"] + train_argv(flagfile, game, seed, "unused", extra_flags)
    try:
        leftover = flag_values(argv, known_only=False)
        if len(leftover) > 1:
            raise ValueError(f"unexpected arguments {leftover[1:]}")
        return flags_lib.config_from_flags(flag_values)
    except (flags.Error, ValueError) as error:
        raise ValueError(f"{flagfile} (with --game={game} --seed={seed} "
                         f"{' '.join(extra_flags)}): {error}") from error


# ----------------------------------------------------------------- game sets
def game_sets(game_set_dir=GAME_SET_DIR):
    """{name: [games]} of the game lists in experiments/configs/games/."""
    _require_dir(game_set_dir)
    return {name[:-4]: read_list_file(os.path.join(game_set_dir, name))
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


# ------------------------------------------------------------------- figures
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
    _require_dir(figure_dir)
    return sorted(name[:-4] for name in os.listdir(figure_dir) if name.endswith(".ini"))


def load_figure(name, figure_dir=FIGURE_DIR):
    """Reads experiments/configs/figures/<name>.ini (or a path to an .ini).

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
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as error:
        raise ValueError(f"{path} is not a valid figure file: {error}") from error
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
