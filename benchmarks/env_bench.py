"""Agent steps per second of the Atari env against bare gymnasium.

Both sides play the same game with the same protocol (frame skip 4 with a
max over the last two frames, grayscale 84x84 INTER_AREA, stack of 4 zero-
padded, sticky actions 0.25) and the same uniformly random actions, resetting
at the end of each game:

  tf_softmoe: `make_atari_env(AtariConfig(game))`, a TF-Agents PyEnvironment.
  gymnasium: `ALE/<game>-v5` (frameskip=1) + `AtariPreprocessing` +
    `FrameStackObservation(padding_type="zero")`.

Catch is timed too, for reference. Usage:
  python -m benchmarks.env_bench [--game Pong] [--steps 5000] [--rounds 3]
      [--json PATH]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tf_softmoe  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TF)

import ale_py  # noqa: E402
import gymnasium  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from tf_softmoe.envs import AtariConfig  # noqa: E402
from tf_softmoe.envs import CatchEnv  # noqa: E402
from tf_softmoe.envs import make_atari_env  # noqa: E402


def _time_py_environment(env, actions):
    """Seconds to take `actions` in a TF-Agents env (it auto-resets)."""
    env.reset()
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    return time.perf_counter() - start


def _time_gymnasium(env, actions, seed):
    """Seconds to take `actions` in a gymnasium env, resetting at the end."""
    env.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return time.perf_counter() - start


def _make_gymnasium_pipeline(game):
    gymnasium.register_envs(ale_py)
    env = gymnasium.make(f"ALE/{game}-v5", frameskip=1,
                         repeat_action_probability=0.25)
    env = gymnasium.wrappers.AtariPreprocessing(
        env, noop_max=0, frame_skip=4, screen_size=84,
        terminal_on_life_loss=False, grayscale_obs=True)
    return gymnasium.wrappers.FrameStackObservation(env, 4,
                                                    padding_type="zero")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None, help="write results here")
    args = parser.parse_args()

    config = AtariConfig(game=args.game)
    ours = make_atari_env(config, seed=0)
    theirs = _make_gymnasium_pipeline(config.game)
    catch = CatchEnv(observation_shape=(84, 84, 4), seed=0)
    rng = np.random.default_rng(0)
    atari_actions = [int(a) for a in rng.integers(ours.num_actions,
                                                  size=args.steps)]
    catch_actions = [int(a) for a in rng.integers(3, size=args.steps)]
    # One warm-up pass each, so that ROM loading and caches do not count.
    _time_py_environment(ours, atari_actions[:200])
    _time_gymnasium(theirs, atari_actions[:200], seed=0)

    samples = {"tf_softmoe make_atari_env": [],
               "gymnasium AtariPreprocessing+FrameStackObservation": [],
               "tf_softmoe CatchEnv 84x84x4": []}
    for round_index in range(args.rounds):
        samples["tf_softmoe make_atari_env"].append(
            _time_py_environment(ours, atari_actions))
        samples["gymnasium AtariPreprocessing+FrameStackObservation"].append(
            _time_gymnasium(theirs, atari_actions, seed=round_index))
        samples["tf_softmoe CatchEnv 84x84x4"].append(
            _time_py_environment(catch, catch_actions))

    baseline = statistics.median(
        samples["gymnasium AtariPreprocessing+FrameStackObservation"])
    rows = []
    for name, seconds in samples.items():
        median = statistics.median(seconds)
        rows.append({
            "env": name,
            "game": "Catch" if "Catch" in name else config.game,
            "steps": args.steps,
            "rounds": args.rounds,
            "steps_per_s": args.steps / median,
            "best_steps_per_s": args.steps / min(seconds),
            "us_per_step": median / args.steps * 1e6,
            "speedup_vs_gymnasium": (baseline / median
                                     if "Catch" not in name else ""),
        })
    common.print_table(rows, ["env", "game", "steps", "steps_per_s",
                              "best_steps_per_s", "us_per_step",
                              "speedup_vs_gymnasium"])
    common.write_json(args.json, "env_bench", rows,
                      config={"game": config.game, "steps": args.steps,
                              "rounds": args.rounds})
    ours.close()
    theirs.close()


if __name__ == "__main__":
    main()
