"""Tests of the Atari environment against real ALE games."""

import ale_py
import gymnasium
import numpy as np
import pytest
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from tf_softmoe.envs import AtariConfig
from tf_softmoe.envs import make_atari_env
from tf_softmoe.envs import resolve_game_name


def _random_actions(count, num_actions, seed):
    return np.random.default_rng(seed).integers(num_actions, size=count)


def _run(env, actions):
    """Steps `env` from a reset through `actions`; returns the time steps."""
    steps = [env.reset()]
    for action in actions:
        steps.append(env.step(np.int64(action)))
    return steps


def test_pong_specs_shapes_and_dtypes():
    env = make_atari_env(AtariConfig(game="Pong"), seed=0)
    obs_spec = env.observation_spec()
    assert obs_spec.shape == (84, 84, 4) and obs_spec.dtype == np.uint8
    assert (obs_spec.minimum, obs_spec.maximum) == (0, 255)
    act_spec = env.action_spec()
    assert act_spec.shape == () and act_spec.dtype == np.int64
    assert (act_spec.minimum, act_spec.maximum) == (0, 5)
    assert env.num_actions == 6 and env.action_meanings[0] == "NOOP"

    first = env.reset()
    assert first.step_type == ts.StepType.FIRST
    array_spec.check_arrays_nest(first, env.time_step_spec())
    for action in _random_actions(30, 6, seed=1):
        step = env.step(action)
        array_spec.check_arrays_nest(step, env.time_step_spec())
        assert step.step_type == ts.StepType.MID
        assert step.reward.dtype == np.float32
        assert step.discount == 1.0
    env.close()


def test_initial_stack_is_zero_padded_and_shifts():
    env = make_atari_env(AtariConfig(game="Pong"), seed=0)
    first = env.reset().observation
    assert not first[..., :3].any()
    assert first[..., 3].any()
    second = env.step(0).observation
    assert not second[..., :2].any()
    np.testing.assert_array_equal(second[..., 2], first[..., 3])
    # Returned observations are not overwritten by later steps.
    snapshot = second.copy()
    env.step(1)
    np.testing.assert_array_equal(second, snapshot)


def test_frames_match_gymnasium_atari_preprocessing():
    """Same seed, sticky actions and actions: identical 84x84 frames."""
    config = AtariConfig(game="Pong", sticky_action_prob=0.25)
    env = make_atari_env(config, seed=3)
    reference = gymnasium.wrappers.AtariPreprocessing(
        gymnasium.make("ALE/Pong-v5", frameskip=1,
                       repeat_action_probability=0.25),
        noop_max=0, frame_skip=4, screen_size=84)
    ours = env.reset().observation[..., -1]
    theirs, _ = reference.reset(seed=3)
    np.testing.assert_array_equal(ours, theirs)
    for action in _random_actions(60, 6, seed=4):
        step = env.step(action)
        theirs, reward, _, _, _ = reference.step(int(action))
        np.testing.assert_array_equal(step.observation[..., -1], theirs)
        assert step.reward == reward
    reference.close()


def test_same_seed_is_reproducible_and_seeds_differ_with_sticky_actions():
    actions = _random_actions(150, 6, seed=5)

    def trajectory(seed, sticky):
        config = AtariConfig(game="Pong", sticky_action_prob=sticky)
        steps = _run(make_atari_env(config, seed=seed), actions)
        return (np.stack([s.observation for s in steps]),
                np.array([s.reward for s in steps]))

    obs_a, rewards_a = trajectory(11, 0.25)
    obs_b, rewards_b = trajectory(11, 0.25)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rewards_a, rewards_b)
    obs_c, _ = trajectory(12, 0.25)
    assert not np.array_equal(obs_a, obs_c)
    # Without sticky actions Pong is deterministic: the seeds' difference
    # above came from the sticky actions.
    obs_d, _ = trajectory(11, 0.0)
    obs_e, _ = trajectory(12, 0.0)
    np.testing.assert_array_equal(obs_d, obs_e)


def test_step_cap_is_a_truncation_and_next_step_starts_a_new_game():
    env = make_atari_env(AtariConfig(game="Pong", max_episode_steps=5), seed=0)
    env.reset()
    for _ in range(4):
        assert env.step(0).step_type == ts.StepType.MID
    last = env.step(0)
    assert last.step_type == ts.StepType.LAST
    assert last.discount == 1.0
    info = env.get_info()
    assert info["truncated"] and info["episode_ended"]
    assert info["episode_length"] == 5
    restarted = env.step(0)
    assert restarted.step_type == ts.StepType.FIRST
    assert not restarted.observation[..., :3].any()
    assert env.get_info()["episode_length"] == 0


def test_reset_mid_game_starts_a_new_game():
    env = make_atari_env(AtariConfig(game="Pong"), seed=0)
    env.reset()
    for _ in range(3):
        env.step(0)
    assert env.get_info()["episode_length"] == 3
    env.reset()
    assert env.get_info()["episode_length"] == 0


@pytest.mark.parametrize("name,expected", [
    ("Pong", "Pong"), ("pong", "Pong"), ("ALE/Pong-v5", "Pong"),
    ("PongNoFrameskip-v4", "Pong"), ("ms_pacman", "MsPacman"),
    ("MsPacman", "MsPacman"), ("space_invaders", "SpaceInvaders"),
    ("ALE/Breakout-v5", "Breakout"),
])
def test_resolve_game_name(name, expected):
    assert resolve_game_name(name) == expected


def test_unknown_game_lists_closest_names():
    with pytest.raises(ValueError, match=r"'Pongg'.*closest.*Pong"):
        resolve_game_name("Pongg")
    with pytest.raises(ValueError, match="MsPacman"):
        AtariConfig(game="mspacmn")
    assert AtariConfig(game="ms_pacman").game == "MsPacman"


def test_resolution_lists_games_ale_py_ships():
    registered = {k for k in gymnasium.registry
                  if k.startswith("ALE/") and k.endswith("-v5")}
    for rom_id in ale_py.roms.get_all_rom_ids():
        try:
            game = resolve_game_name(rom_id)
        except ValueError:
            # Multi-player ROMs ship without a single-agent v5 env.
            assert not any(k.lower() == f"ale/{rom_id.replace('_', '')}-v5"
                           for k in registered)
            continue
        assert f"ALE/{game}-v5" in registered


def test_der_preset_life_loss_is_terminal_but_game_continues():
    config = AtariConfig.preset("der", "Breakout", max_episode_steps=5000)
    assert config.sticky_action_prob == 0.0 and config.terminal_on_life_loss
    env = make_atari_env(config, seed=0)
    env.reset()
    start_lives = env.get_info()["lives"]
    rng = np.random.default_rng(0)
    for _ in range(3000):
        step = env.step(rng.integers(env.num_actions))
        if step.is_last():
            break
    info = env.get_info()
    assert step.is_last() and step.discount == 0.0
    assert info["life_lost"] and not info["episode_ended"]
    assert info["lives"] == start_lives - 1
    length, score = info["episode_length"], info["episode_raw_return"]

    first = env.step(0)
    assert first.step_type == ts.StepType.FIRST
    assert not first.observation[..., :3].any()
    np.testing.assert_array_equal(first.observation[..., 3],
                                  step.observation[..., 3])
    after = env.get_info()
    assert after["lives"] == start_lives - 1
    assert (after["episode_length"], after["episode_raw_return"]) == (
        length, score)
    env.step(1)
    assert env.get_info()["episode_length"] == length + 1

    # Play on to the real game over: it ends the reported episode.
    games_over = 0
    for _ in range(20000):
        step = env.step(rng.integers(env.num_actions))
        if step.is_last() and env.get_info()["episode_ended"]:
            games_over += 1
            break
    assert games_over == 1 and step.discount == 0.0
    assert env.get_info()["lives"] == 0
    assert env.step(0).step_type == ts.StepType.FIRST
    assert env.get_info()["lives"] == start_lives
    assert env.get_info()["episode_length"] == 0


def test_life_loss_is_not_terminal_by_default():
    env = make_atari_env(AtariConfig(game="Breakout"), seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(3000):
        step = env.step(rng.integers(env.num_actions))
        if env.get_info()["life_lost"]:
            break
    assert env.get_info()["life_lost"]
    assert step.step_type == ts.StepType.MID and step.discount == 1.0


def test_reward_is_raw_score():
    env = make_atari_env(AtariConfig(game="SpaceInvaders"), seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    total = 0.0
    big = None
    for _ in range(600):
        step = env.step(rng.integers(env.num_actions))
        info = env.get_info()
        assert step.reward == info["raw_reward"]
        total += float(step.reward)
        if step.reward > 1.0:
            big = float(step.reward)
            break
    assert big is not None, "no reward above 1 in 600 random steps"
    assert env.get_info()["episode_raw_return"] == total


def test_noop_starts_are_seeded():
    def frames_after_reset(seed):
        env = make_atari_env(AtariConfig(game="Pong", noop_max=30), seed=seed)
        env.reset()
        ale = env._ale  # pylint: disable=protected-access
        return ale.getEpisodeFrameNumber()

    counts = [frames_after_reset(seed) for seed in range(4)]
    assert all(1 <= c <= 30 for c in counts)
    assert len(set(counts)) > 1
    assert frames_after_reset(2) == counts[2]


def _frame_number(env):
    return env._ale.getEpisodeFrameNumber()  # pylint: disable=protected-access


def test_der_preset_plays_noop_agent_steps_at_each_game_start():
    """0..29 no-op agent steps (4 frames each), drawn anew for every game."""
    config = AtariConfig.preset("der", "Pong")
    assert config.noop_start_steps == 30
    assert AtariConfig.preset("dopamine", "Pong").noop_start_steps == 0
    env = make_atari_env(config, seed=0)
    counts = []
    for game in range(40):
        first = env.reset() if game == 0 else env.reset_game()
        count = env.noop_steps
        counts.append(count)
        assert 0 <= count <= 29
        assert _frame_number(env) == 4 * count      # agent steps, not frames
        info = env.get_info()
        # No-op rewards and steps belong to no episode.
        assert (info["episode_length"], info["episode_raw_return"]) == (0, 0.0)
        assert first.step_type == ts.StepType.FIRST
        assert not first.observation[..., :3].any()
    assert len(set(counts)) > 10 and min(counts) <= 3 and max(counts) >= 26
    env.close()


def test_noop_start_observation_is_the_last_noop_frame():
    config = AtariConfig.preset("der", "Pong")
    env = make_atari_env(config, seed=3)
    first = env.reset()
    count = env.noop_steps
    assert count > 0
    # The same game without no-op starts, stepped `count` times with NOOP.
    plain = make_atari_env(AtariConfig.preset("der", "Pong",
                                              noop_start_steps=0), seed=3)
    plain.reset()
    for _ in range(count):
        step = plain.step(np.int64(0))
    np.testing.assert_array_equal(first.observation[..., -1],
                                  step.observation[..., -1])
    # And the game goes on from there alike.
    for action in (1, 2, 3, 0, 5):
        np.testing.assert_array_equal(
            env.step(np.int64(action)).observation[..., -1],
            plain.step(np.int64(action)).observation[..., -1])
    assert _frame_number(env) == _frame_number(plain)


def test_noop_starts_restart_the_game_at_a_terminal_among_them():
    # A 40-frame cap ends the game after 10 no-op steps; the runner then
    # resets and plays the remaining no-ops in the new game.
    config = AtariConfig.preset("der", "Pong", max_episode_frames=40)
    env = make_atari_env(config, seed=0)
    seen = set()
    for game in range(30):
        if game == 0:
            env.reset()
        else:
            env.reset_game()
        seen.add(env.noop_steps)
        assert _frame_number(env) == 4 * (env.noop_steps % 10)
    assert max(seen) >= 10


def test_noop_starts_are_reproducible_per_seed_as_in_evaluation():
    """Seeded alike, games (no-op counts, frames) are alike; the evaluation
    env is re-seeded before each evaluation and then replays the same."""
    def play(env):
        counts, frames = [], []
        for game in range(5):
            first = env.reset() if game == 0 else env.reset_game()
            counts.append(env.noop_steps)
            frames.append(first.observation[..., -1])
            for action in (1, 0, 2):
                frames.append(env.step(np.int64(action)).observation[..., -1])
        return counts, np.stack(frames)

    config = AtariConfig.preset("der", "Breakout")
    counts_a, frames_a = play(make_atari_env(config, seed=11))
    evaluation = make_atari_env(config, seed=11)
    counts_b, frames_b = play(evaluation)
    assert counts_a == counts_b and len(set(counts_a)) > 1
    np.testing.assert_array_equal(frames_a, frames_b)
    evaluation.seed(11)
    assert play(evaluation)[0] == counts_a
    evaluation.seed(12)
    assert play(evaluation)[0] != counts_a


def test_invalid_action_raises():
    env = make_atari_env(AtariConfig(game="Pong"), seed=0)
    env.reset()
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        env.step(6)


@pytest.mark.parametrize("field,value", [
    ("sticky_action_prob", -0.1), ("sticky_action_prob", 1.0),
    ("sticky_action_prob", "high"), ("frame_skip", 0), ("frame_skip", 2.5),
    ("frame_skip", True), ("screen_size", 0), ("stack_size", 0),
    ("max_episode_steps", 0), ("noop_max", -1), ("noop_start_steps", -1),
    ("noop_start_steps", 2.0), ("max_episode_frames", -1),
    ("stop_observation", "last"),
    ("terminal_on_life_loss", "yes"), ("full_action_space", 1),
])
def test_invalid_config_names_field_and_value(field, value):
    with pytest.raises(ValueError) as error:
        AtariConfig(game="Pong", **{field: value})
    message = str(error.value)
    assert field in message and repr(value) in message, message


def test_presets_and_their_errors():
    dopamine = AtariConfig.preset("dopamine", "pong")
    assert dopamine == AtariConfig(game="Pong")
    assert (dopamine.sticky_action_prob, dopamine.frame_skip,
            dopamine.screen_size, dopamine.stack_size,
            dopamine.max_episode_steps, dopamine.terminal_on_life_loss) == (
                0.25, 4, 84, 4, 27_000, False)
    assert AtariConfig.preset("der", "Pong", stack_size=2).stack_size == 2
    with pytest.raises(ValueError, match="dopamine"):
        AtariConfig.preset("nature", "Pong")
    with pytest.raises(ValueError, match="sticky_action_prob"):
        AtariConfig.preset("der", "Pong", sticky=0.1)
    with pytest.raises(ValueError, match="AtariConfig"):
        make_atari_env("Pong")
    with pytest.raises(ValueError, match="seed"):
        make_atari_env(AtariConfig(game="Pong"), seed=-1)
