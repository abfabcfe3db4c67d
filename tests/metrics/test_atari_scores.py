"""Tests of tf_softmoe.metrics.atari_scores."""

import numpy as np
import pytest

from tf_softmoe.metrics import atari_scores


def test_table_has_the_57_games():
    games = atari_scores.atari_games()
    assert len(games) == 57
    assert len(set(games)) == 57
    for game in ("Pong", "MsPacman", "MontezumaRevenge", "UpNDown", "Defender",
                 "Surround", "VideoPinball"):
        assert game in games


def test_every_game_has_human_score_above_random():
    for game in atari_scores.atari_games():
        entry = atari_scores.reference_scores(game)
        assert entry.human > entry.random, game


@pytest.mark.parametrize("game, random, human", [
    ("Pong", -20.7, 14.6),
    ("Breakout", 1.7, 30.5),
    ("Asterix", 210.0, 8503.3),
    ("MsPacman", 307.3, 6951.6),
    ("Seaquest", 68.4, 42054.7),
    ("VideoPinball", 0.0, 17667.9),
])
def test_reference_scores_spot_checks(game, random, human):
    entry = atari_scores.reference_scores(game)
    assert entry.game == game
    assert entry.random == random
    assert entry.human == human


def test_human_normalized_score_hand_values():
    hns = atari_scores.human_normalized_score
    # Pong: (0 - (-20.7)) / (14.6 - (-20.7)) = 20.7 / 35.3 = 0.586402266...
    assert hns("Pong", 0.0) == pytest.approx(20.7 / 35.3, rel=1e-12)
    assert hns("Pong", 0.0) == pytest.approx(0.5864022663, abs=1e-9)
    # Breakout: (30.5 - 1.7) / (30.5 - 1.7) = 1 at human level; 400 ->
    # (400 - 1.7) / 28.8 = 398.3 / 28.8 = 13.829861...
    assert hns("Breakout", 30.5) == pytest.approx(1.0)
    assert hns("Breakout", 400.0) == pytest.approx(13.8298611111, abs=1e-9)
    # Asterix: (1000 - 210) / (8503.3 - 210) = 790 / 8293.3 = 0.095257...
    assert hns("Asterix", 1000.0) == pytest.approx(0.0952576176, abs=1e-9)


def test_human_normalized_score_is_vectorised():
    raw = np.array([[-20.7, 14.6], [-3.05, 49.9]])
    normalised = atari_scores.human_normalized_score("pong", raw)
    assert normalised.shape == (2, 2)
    # -3.05 is halfway between -20.7 and 14.6; 49.9 = 14.6 + 35.3 is two
    # humans.
    np.testing.assert_allclose(normalised, [[0.0, 1.0], [0.5, 2.0]],
                               atol=1e-12)
    assert isinstance(atari_scores.human_normalized_score("Pong", 14.6), float)


@pytest.mark.parametrize("name", [
    "Pong", "pong", "PONG", "ALE/Pong-v5", "PongNoFrameskip-v4", "Pong-v4",
    "PongDeterministic-v4", " pong "])
def test_name_spellings_of_pong(name):
    assert atari_scores.canonical_game_name(name) == "Pong"


@pytest.mark.parametrize("name, expected", [
    ("ms_pacman", "MsPacman"),
    ("ALE/MsPacman-v5", "MsPacman"),
    ("montezuma_revenge", "MontezumaRevenge"),
    ("montezuma-revenge", "MontezumaRevenge"),
    ("up_n_down", "UpNDown"),
    ("ALE/UpNDown-v5", "UpNDown"),
    ("space_invaders", "SpaceInvaders"),
    ("video_pinball", "VideoPinball"),
])
def test_name_spellings(name, expected):
    assert atari_scores.canonical_game_name(name) == expected


def test_unknown_game_lists_close_names():
    with pytest.raises(ValueError, match="Did you mean.*MsPacman"):
        atari_scores.reference_scores("MsPacmn")


def test_unknown_game_without_close_names_lists_all():
    with pytest.raises(ValueError, match="Known games: Alien"):
        atari_scores.reference_scores("Tetris2000")


def test_airraid_is_not_normalisable():
    with pytest.raises(ValueError, match="AirRaid.*not one of the 57"):
        atari_scores.human_normalized_score("ALE/AirRaid-v5", 1000.0)


def test_non_string_game_is_rejected():
    with pytest.raises(TypeError, match="string"):
        atari_scores.reference_scores(3)


def test_human_normalized_matrix_per_game_columns():
    raw = np.array([[-20.7, 1.7], [14.6, 30.5], [-3.05, 16.1]])
    normalised = atari_scores.human_normalized_matrix(
        raw, ["Pong", "breakout"])
    # Breakout 16.1 = 1.7 + 14.4 = halfway to human (28.8 / 2).
    np.testing.assert_allclose(normalised, [[0, 0], [1, 1], [0.5, 0.5]],
                               atol=1e-12)
    curves = np.stack([raw, raw], axis=-1)  # [runs, games, iterations]
    curves_normalised = atari_scores.human_normalized_matrix(
        curves, ["Pong", "Breakout"])
    np.testing.assert_allclose(curves_normalised[..., 1], normalised)


def test_human_normalized_matrix_checks_game_count():
    with pytest.raises(ValueError, match="2 game columns but 1 game names"):
        atari_scores.human_normalized_matrix(np.zeros((3, 2)), ["Pong"])


def test_has_human_score_matches_the_one_failure_mode():
    for game in ("Pong", "ms_pacman", "ALE/Breakout-v5"):
        assert atari_scores.has_human_score(game)
    for game in ("AirRaid", "catch", "Pongg", None):
        assert not atari_scores.has_human_score(game)
        if isinstance(game, str):
            with pytest.raises(ValueError):
                atari_scores.human_normalized_score(game, 1.0)
    assert np.isnan(atari_scores.human_normalized_score("Pong", float("nan")))
