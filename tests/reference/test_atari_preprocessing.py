"""Atari preprocessing against Dopamine's own (`atari_lib`).

The reference environment is `atari_lib.create_atari_environment` (ALE v5
through gymnasium, `AtariPreprocessing`), driven as Dopamine's runners drive
it: after a step whose `game_over` is set the game is reset; a lost life with
`terminal_on_life_loss` ends only the learning episode and the game goes on.
Ours is driven the same way through TF-Agents' `LAST` / `reset()`. With
sticky actions off and the same actions, every 84x84 frame, raw reward,
terminal and game over must be equal, bit for bit. Our no-op starts are off:
the reference's are drawn by its runner from the agent's JAX key, so their
counts cannot be shared; `tests/envs/test_atari.py` tests them.
"""

import numpy as np
import pytest
from tf_agents.trajectories import time_step as ts

from tf_softmoe.agents import AgentConfig
from tf_softmoe.envs import AtariConfig
from tf_softmoe.envs import make_atari_env

# (case, game, protocol, agent steps). Breakout with random actions loses
# its lives within these steps, so the DER case has life-loss terminals and
# a game over followed by a new game.
_CASES = (
    ("pong", "Pong", "dopamine", 400),
    ("pong_der", "Pong", "der", 300),
    ("breakout", "Breakout", "dopamine", 400),
    ("breakout_der", "Breakout", "der", 1500),
)
# A small ALE frame cap (not a multiple of the frame skip) to compare the
# end of a game at the cap without playing the reference's 100 000 frames.
_SMALL_FRAME_CAP = 403

_REFERENCE_SCRIPT = """
# In the reference venv TensorFlow (imported by atari_lib) aborts on a
# duplicate protobuf descriptor unless jax is imported before it.
import jax
import gymnasium
import ale_py
from dopamine.discrete_domains import atari_lib

for case, game, life_loss in zip(inputs["cases"], inputs["games"],
                                 inputs["life_loss"]):
    case, game = str(case), str(game)
    env = atari_lib.create_atari_environment(game_name=game,
                                             sticky_actions=False)
    env.terminal_on_life_loss = bool(life_loss)
    frames, rewards, terminals, overs, resets = [], [], [], [], []
    frames.append(env.reset()[..., 0].copy())
    for action in inputs[case + "_actions"]:
        observation, reward, terminal, _ = env.step(int(action))
        frames.append(observation[..., 0].copy())
        rewards.append(reward)
        terminals.append(terminal)
        overs.append(env.game_over)
        if env.game_over:
            resets.append(env.reset()[..., 0].copy())
    outputs[case + "_frames"] = np.stack(frames)
    outputs[case + "_rewards"] = np.array(rewards, np.float64)
    outputs[case + "_terminals"] = np.array(terminals, bool)
    outputs[case + "_game_overs"] = np.array(overs, bool)
    outputs[case + "_resets"] = np.array(resets, np.uint8).reshape(-1, 84, 84)
    if case == inputs["cases"][0]:
        outputs["frame_cap"] = np.array(
            env.environment.unwrapped.ale.getInt("max_num_frames_per_episode"))

# The end of a game at ALE's frame cap, through the same preprocessing.
gymnasium.register_envs(ale_py)
capped = atari_lib.AtariPreprocessing(gymnasium.make(
    "ALE/Pong-v5", repeat_action_probability=0.0, frameskip=1,
    max_num_frames_per_episode=int(inputs["small_frame_cap"])).env)
capped.reset()
steps, terminal = 0, False
while not terminal:
    _, _, terminal, _ = capped.step(0)
    steps += 1
outputs["cap_steps"] = np.array(steps)
outputs["cap_game_over"] = np.array(capped.game_over)
"""


def _actions(game_index, count, num_actions):
    return np.random.default_rng(100 + game_index).integers(
        num_actions, size=count)


def _config(game, protocol):
    if protocol == "der":
        return AtariConfig.preset("der", game, noop_start_steps=0)
    return AtariConfig.preset("dopamine", game, sticky_action_prob=0.0)


def _play(config, actions):
    """Our env, driven as the reference is; the same arrays as the script."""
    env = make_atari_env(config, seed=0)
    frames = [env.reset().observation[..., -1]]
    rewards, terminals, overs, resets = [], [], [], []
    for action in actions:
        step = env.step(np.int64(action))
        info = env.get_info()
        frames.append(step.observation[..., -1])
        rewards.append(float(step.reward))
        terminals.append(bool(step.is_last() and step.discount == 0.0))
        overs.append(info["episode_ended"])
        if step.is_last():
            first = env.reset()
            assert first.step_type == ts.StepType.FIRST
            if info["episode_ended"]:
                resets.append(first.observation[..., -1])
    env.close()
    return {"frames": np.stack(frames), "rewards": np.array(rewards),
            "terminals": np.array(terminals), "game_overs": np.array(overs),
            "resets": np.array(resets, np.uint8).reshape(-1, 84, 84)}


def _case_actions():
    actions = {}
    for index, (case, game, protocol, count) in enumerate(_CASES):
        env = make_atari_env(_config(game, protocol), seed=0)
        actions[case] = _actions(index, count, env.num_actions)
        env.close()
    return actions


@pytest.fixture(scope="module")
def played(reference):
    actions = _case_actions()
    arrays = {f"{case}_actions": actions[case] for case in actions}
    theirs = reference(
        _REFERENCE_SCRIPT,
        cases=np.array([c[0] for c in _CASES]),
        games=np.array([c[1] for c in _CASES]),
        life_loss=np.array([c[2] == "der" for c in _CASES]),
        small_frame_cap=np.array(_SMALL_FRAME_CAP), **arrays)
    ours = {case: _play(_config(game, protocol), actions[case])
            for case, game, protocol, _ in _CASES}
    return ours, theirs


@pytest.mark.parametrize("case", [c[0] for c in _CASES])
def test_frames_rewards_and_terminals_equal_the_reference(played, case):
    ours, theirs = played
    ours = ours[case]
    for key in ("frames", "resets"):
        mine, reference = ours[key], theirs[f"{case}_{key}"]
        assert mine.shape == reference.shape, key
        difference = np.abs(mine.astype(int) - reference.astype(int))
        differing = np.count_nonzero(
            difference.reshape(len(mine), 84 * 84).any(1))
        assert differing == 0, (
            f"{key}: {differing} differ, max difference {difference.max()}")
    np.testing.assert_array_equal(ours["rewards"], theirs[f"{case}_rewards"])
    np.testing.assert_array_equal(ours["terminals"],
                                  theirs[f"{case}_terminals"])
    np.testing.assert_array_equal(ours["game_overs"],
                                  theirs[f"{case}_game_overs"])
    # What goes to learning: both clip to [-1, 1] (the reference's runner,
    # our collection loop with the presets' reward_clip).
    clip = AgentConfig.preset("der").reward_clip
    assert clip == AgentConfig.preset("rainbow").reward_clip == 1.0
    np.testing.assert_array_equal(
        np.clip(ours["rewards"], -clip, clip),
        np.clip(theirs[f"{case}_rewards"], -1.0, 1.0))


def test_the_cases_cover_life_loss_game_over_and_rewards(played):
    _, theirs = played
    terminals = theirs["breakout_der_terminals"]
    overs = theirs["breakout_der_game_overs"]
    assert np.count_nonzero(terminals & ~overs) >= 4   # lives lost, game on
    assert overs.any() and len(theirs["breakout_der_resets"]) >= 1
    assert not theirs["breakout_terminals"].any() or theirs[
        "breakout_game_overs"][theirs["breakout_terminals"]].all()
    assert (theirs["pong_rewards"] != 0).any()
    assert (theirs["breakout_der_rewards"] > 0).any()
    # A life lost on one of the first two frames of a skip repeats the
    # previous frame in the reference (stale pooling buffers): the case that
    # `stop_observation="dopamine"` reproduces.
    frames = theirs["breakout_der_frames"]
    stale = [i for i in np.flatnonzero(terminals & ~overs)
             if np.array_equal(frames[i + 1], frames[i])]
    assert stale, "no life lost early in a frame skip; choose other actions"


def test_frame_cap_equals_the_reference(played):
    _, theirs = played
    assert AtariConfig(game="Pong").max_episode_frames == int(
        theirs["frame_cap"]) == 100_000
    env = make_atari_env(AtariConfig(
        game="Pong", sticky_action_prob=0.0,
        max_episode_frames=_SMALL_FRAME_CAP), seed=0)
    env.reset()
    steps = 0
    while True:
        step = env.step(np.int64(0))
        steps += 1
        if step.is_last():
            break
    assert steps == int(theirs["cap_steps"]) == -(-_SMALL_FRAME_CAP // 4)
    assert step.discount == 0.0 and bool(theirs["cap_game_over"])
    assert env.get_info()["episode_ended"]
