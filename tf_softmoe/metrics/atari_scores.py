"""Human-normalised Atari scores.

The human-normalised score of a raw game score is

    hns = (score - random) / (human - random),

so 0 is the score of a uniformly random policy and 1 the score of a
professional human tester (Mnih et al. 2015; van Hasselt et al. 2016). The
per-game reference scores live in `data/atari_human_random.csv` (57 games;
provenance in `data/README.md`).

Game names are accepted in any of the usual spellings: 'Pong', 'pong',
'ALE/Pong-v5', 'PongNoFrameskip-v4', 'ms_pacman', 'MsPacman',
'montezuma-revenge'.
"""

import csv
import difflib
import functools
import importlib.resources
import re
from typing import Dict, NamedTuple, Tuple

import numpy as np

_DATA_FILE = "atari_human_random.csv"

# Games of Dopamine's 60-game list that the 57-game table leaves out: there
# is no standard human score for them, so they get their own error message.
# The reference has none either (dopamine/labs/atari_100k/normalization_utils.py
# raises KeyError for them); AirRaid, one of the paper's 20 games, is therefore
# reported by its raw score and left out of human-normalised aggregates.
_GAMES_WITHOUT_HUMAN_SCORE = ("AirRaid", "Carnival", "ElevatorAction",
                              "JourneyEscape", "Pooyan")

_VERSION_SUFFIX = re.compile(r"-v\d+$")
_GYM_VARIANT_SUFFIX = re.compile(r"(noframeskip|deterministic)$")


class ReferenceScores(NamedTuple):
    """Random-agent and human reference scores of one game."""
    game: str
    random: float
    human: float


def _game_key(name: str) -> str:
    """Reduces a game name to lower-case letters and digits.

    Environment decorations go too: 'ALE/MsPacman-v5', 'MsPacmanNoFrameskip-v4'
    and 'ms_pacman' all become 'mspacman'.
    """
    key = name.strip()
    if "/" in key:
        key = key.rsplit("/", 1)[1]
    key = _VERSION_SUFFIX.sub("", key)
    key = re.sub(r"[^0-9a-zA-Z]", "", key).lower()
    return _GYM_VARIANT_SUFFIX.sub("", key)


@functools.lru_cache(maxsize=1)
def _load_table() -> Dict[str, ReferenceScores]:
    """Reads the reference table once, keyed by `_game_key` of the name."""
    resource = importlib.resources.files("tf_softmoe.metrics").joinpath(
        "data", _DATA_FILE)
    with resource.open("r", encoding="utf-8") as handle:
        lines = [line for line in handle if not line.lstrip().startswith("#")]
    table = {}
    for row in csv.DictReader(lines):
        entry = ReferenceScores(row["game"], float(row["random"]),
                                float(row["human"]))
        table[_game_key(entry.game)] = entry
    return table


def atari_games() -> Tuple[str, ...]:
    """Returns the sorted CamelCase names of the games with reference data."""
    return tuple(sorted(entry.game for entry in _load_table().values()))


def canonical_game_name(game: str) -> str:
    """Maps any accepted spelling of a game to its CamelCase ALE name.

    Args:
      game: e.g. 'pong', 'Pong', 'ALE/Pong-v5', 'PongNoFrameskip-v4',
        'ms_pacman'.

    Returns:
      The CamelCase name used in the reference table, e.g. 'MsPacman'.

    Raises:
      ValueError: if the game has no reference scores; the message lists
        close names, or says that the game exists in the ALE but has no
        standard human score.
    """
    return reference_scores(game).game


def reference_scores(game: str) -> ReferenceScores:
    """Returns the random and human reference scores of a game.

    Args:
      game: game name in any accepted spelling (see `canonical_game_name`).

    Returns:
      `ReferenceScores(game, random, human)` with the CamelCase game name.

    Raises:
      TypeError: if `game` is not a string.
      ValueError: if the game has no reference scores.
    """
    if not isinstance(game, str):
        raise TypeError(f"game must be a string such as 'Pong', got {game!r}.")
    table = _load_table()
    key = _game_key(game)
    if key in table:
        return table[key]
    without_human = {_game_key(name): name
                     for name in _GAMES_WITHOUT_HUMAN_SCORE}
    if key in without_human:
        raise ValueError(
            f"{without_human[key]} is an ALE game but not one of the 57 games "
            "with a standard human reference score, so its score cannot be "
            "human-normalised. Report its raw score, or leave it out of "
            "human-normalised aggregates.")
    close_keys = difflib.get_close_matches(key, list(table), n=5, cutoff=0.6)
    suggestion = (
        "Did you mean " + ", ".join(table[k].game for k in close_keys) + "?"
        if close_keys else
        "Known games: " + ", ".join(atari_games()) + ".")
    raise ValueError(f"Unknown Atari game {game!r}. {suggestion}")


def has_human_score(game) -> bool:
    """Whether `human_normalized_score` can normalise `game`'s scores.

    False for the ALE games without a standard human score (AirRaid, one of
    the paper's 20 games, and Carnival, ElevatorAction, JourneyEscape,
    Pooyan), for the built-in 'catch' game, for unknown names and for
    non-strings.
    """
    try:
        reference_scores(game)
    except (TypeError, ValueError):
        return False
    return True


def human_normalized_score(game: str, score):
    """Converts raw game scores to human-normalised scores.

    hns = (score - random) / (human - random), with the game's reference
    scores. This is the project's one human-normalisation: the training
    loop's metrics.csv, experiments/evaluate.py and the sweep analysis all
    call it. A NaN score gives NaN.

    Failure mode (the only one): a game without a human reference score
    raises `ValueError`. That is AirRaid among the paper's 20 games (the
    reference has no human score for it either:
    dopamine/labs/atari_100k/normalization_utils.py raises KeyError), the
    other ALE games listed in `_GAMES_WITHOUT_HUMAN_SCORE`, 'catch' and
    unknown names. Check `has_human_score(game)` first where such a game is
    expected: metrics.csv then holds NaN in its human-normalised columns, and
    the analysis reports the raw score and leaves the game out of every
    human-normalised aggregate.

    Args:
      game: game name in any accepted spelling (see `canonical_game_name`).
      score: a raw score, or an array of raw scores of any shape.

    Returns:
      A float for a scalar `score`, else a float64 array shaped like `score`.

    Raises:
      ValueError: if the game has no human reference score (see above).
      TypeError: if `game` is not a string.
    """
    entry = reference_scores(game)
    normalised = (np.asarray(score, dtype=np.float64) - entry.random) / (
        entry.human - entry.random)
    return float(normalised) if normalised.ndim == 0 else normalised


def human_normalized_matrix(scores, games):
    """Human-normalises a score array whose axis 1 runs over games.

    Args:
      scores: array [runs, games, ...] of raw scores (e.g. [runs, games]
        final scores or [runs, games, iterations] learning curves).
      games: sequence of game names, one per entry of axis 1.

    Returns:
      float64 array shaped like `scores`, each game column normalised with
      its own reference scores.

    Raises:
      ValueError: if `scores` has fewer than 2 axes, if `len(games)` differs
        from `scores.shape[1]`, or if a game has no reference scores.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim < 2:
        raise ValueError(
            "scores must have shape [runs, games, ...], got shape "
            f"{scores.shape}.")
    games = list(games)
    if len(games) != scores.shape[1]:
        raise ValueError(
            f"scores has {scores.shape[1]} game columns but {len(games)} game "
            "names were given; pass one name per column.")
    entries = [reference_scores(game) for game in games]
    broadcast = (1, len(entries)) + (1,) * (scores.ndim - 2)
    random = np.array([e.random for e in entries]).reshape(broadcast)
    human = np.array([e.human for e in entries]).reshape(broadcast)
    return (scores - random) / (human - random)
