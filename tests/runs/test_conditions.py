"""tf_softmoe.runs.conditions: flag files, game sets, seeds, and a run's
config parsed without touching the global absl flags."""

import os

import pytest
from absl import flags

from tf_softmoe.runs import conditions


def test_parse_seeds_and_games():
    assert conditions.parse_seeds("0-2,5") == [0, 1, 2, 5]
    assert conditions.parse_seeds([3, 1]) == [1, 3]
    with pytest.raises(ValueError, match="backwards"):
        conditions.parse_seeds("4-2")
    with pytest.raises(ValueError, match="Bad seed"):
        conditions.parse_seeds("a")
    games = conditions.parse_games("Pong,atari20")
    assert games[0] == "Pong" and len(games) == 20 and games.count("Pong") == 1


def test_find_flagfile_suggests_close_names():
    path = conditions.find_flagfile("rainbow_impala_softmoe4.flags")
    assert path == os.path.join(conditions.CONFIG_DIR, "rainbow_impala_softmoe4.flags")
    with pytest.raises(FileNotFoundError, match="Did you mean rainbow_impala_softmoe4"):
        conditions.find_flagfile("rainbow_impala_softmoe44")


def test_config_for_leaves_the_global_flags_alone():
    from experiments import flag_defs  # pylint: disable=import-outside-toplevel
    assert "num_iterations" in flag_defs.FLAGS  # the train binary's flags
    before = {name: flags.FLAGS[name].value for name in flags.FLAGS}
    config = conditions.config_for(conditions.find_flagfile("dqn_nature_softmoe4"),
                                   game="breakout", seed=7,
                                   extra_flags=("--num_iterations=3",))
    assert (config.game, config.schedule.seed, config.schedule.num_iterations) == (
        "Breakout", 7, 3)
    assert config.agent.kind == "dqn" and config.network.num_experts == 4
    assert {name: flags.FLAGS[name].value for name in flags.FLAGS} == before
    assert flags.FLAGS["num_iterations"].present == 0
    # A binary's parsed flags survive a config_for in its process.
    flags.FLAGS(["binary", "--num_iterations=5"])
    try:
        conditions.config_for(conditions.find_flagfile("dqn_nature_softmoe4"))
        assert flags.FLAGS.num_iterations == 5
    finally:
        flags.FLAGS.unparse_flags()


def test_config_for_names_the_flagfile_on_a_bad_value():
    flagfile = conditions.find_flagfile("rainbow_nature_flatten_x1")
    with pytest.raises(ValueError, match="rainbow_nature_flatten_x1.flags"):
        conditions.config_for(flagfile, extra_flags=("--num_iterations=abc",))
    with pytest.raises(ValueError, match="not allowed"):
        conditions.config_for(flagfile, extra_flags=("--seed=3",))


def test_flagfile_that_sets_the_game_is_rejected(tmp_path):
    flagfile = tmp_path / "bad.flags"
    flagfile.write_text("--agent=dqn\n--game=Pong\n")
    with pytest.raises(ValueError, match="sets --game"):
        conditions.config_for(str(flagfile))


def test_repo_relative():
    inside = os.path.join(conditions.REPO_ROOT, "experiments", "train.py")
    assert conditions.repo_relative(inside) == os.path.join("experiments", "train.py")
    outside = os.path.join(os.path.dirname(conditions.REPO_ROOT), "elsewhere")
    assert conditions.repo_relative(outside) == outside


def test_missing_configs_directory_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip install -e"):
        conditions.all_flagfiles(str(tmp_path / "configs"))
