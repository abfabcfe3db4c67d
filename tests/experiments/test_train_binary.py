"""experiments/train.py and experiments/evaluate.py as a user runs them:
subprocesses on a real ALE game."""

import csv
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf
import tf_agents  # noqa: F401  (registers the TFP TypeSpecs a saved policy uses)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(REPO, "experiments", "train.py")
EVALUATE = os.path.join(REPO, "experiments", "evaluate.py")

# A real Pong run at a budget a test can afford: small network, few steps.
TINY = ["--agent=rainbow", "--game=Pong", "--encoder=nature", "--penultimate=softmoe",
        "--num_experts=2", "--hidden_units=16", "--steps_per_iteration=150",
        "--min_replay_history=64", "--update_period=4", "--target_update_period=64",
        "--replay_capacity=2000", "--diagnostics_period=10", "--jit_compile=false"]


def env():
    values = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    values["PYTHONPATH"] = REPO + os.pathsep + values.get("PYTHONPATH", "")
    return values


def run(args, timeout=600):
    return subprocess.run([sys.executable] + args, capture_output=True, text=True,
                          timeout=timeout, env=env(), cwd=REPO, check=False)


def rows(root):
    with open(os.path.join(root, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def checkpoint_dirs(root):
    """Finished checkpoints (not the `.tmp-` directories being written)."""
    return sorted(p for p in glob.glob(os.path.join(root, "checkpoints", "ckpt-*"))
                  if re.fullmatch(r"ckpt-\d{8}", os.path.basename(p)))


def newest_state(root):
    with open(os.path.join(checkpoint_dirs(root)[-1], "state.json")) as f:
        return json.load(f)


def test_smoke_run_on_pong_writes_everything_and_the_policy_loads(tmp_path):
    root = str(tmp_path / "pong")
    result = run([TRAIN, *TINY, "--num_iterations=2", f"--root_dir={root}",
                  "--progress_steps=100", "--summary_period=50"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tensorboard --logdir" in result.stdout
    assert "iteration 2/2 | 300 agent steps" in result.stdout
    # The progress line inside each iteration (--progress_steps=100).
    assert re.search(r"\[Pong\] iteration 1/2 progress: 100/150 steps \(67%\) \| "
                     r"\d+ steps/s \| \d+ updates \| \d+ episodes, .* \| "
                     r"ETA iteration \d+h\d\dm\d\ds, run \d+h\d\dm\d\ds",
                     result.stdout), result.stdout
    assert "iteration 2/2 progress: 50/150 steps" in result.stdout
    table = rows(root)
    assert [int(r["iteration"]) for r in table] == [0, 1]
    assert int(table[-1]["agent_steps"]) == 300
    assert float(table[-1]["train_loss"]) > 0
    tags = set()
    for path in glob.glob(os.path.join(root, "tensorboard", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    assert {"train/loss", "train/q_mean", "diagnostics/srank", "experts/gate_0",
            "perf/agent_steps_per_second", "updates/loss",
            "perf/recent_agent_steps_per_second"} <= tags
    with open(os.path.join(root, "config.json")) as f:
        schedule = json.load(f)["schedule"]
    assert (schedule["progress_steps"], schedule["summary_period"],
            schedule["progress_seconds"]) == (100, 50, 30.0)
    assert glob.glob(os.path.join(root, "checkpoints", "ckpt-*", "state.json"))
    policy = tf.saved_model.load(os.path.join(root, "policy"))
    assert hasattr(policy, "action")
    assert os.path.exists(os.path.join(root, "q_network.keras"))
    evaluation = run([EVALUATE, f"--policy_dir={root}/policy", "--num_episodes=1",
                      "--max_steps=200"])
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert "Pong:" in evaluation.stdout
    # The same directory with another network is refused, naming the field.
    changed = run([TRAIN, *TINY, "--num_iterations=2", "--num_experts=4",
                   f"--root_dir={root}"])
    assert changed.returncode == 2
    assert "network.num_experts: stored 2, now 4" in changed.stderr
    assert "--allow_config_change" in changed.stderr


def test_kill_9_in_a_later_iteration_then_resume(tmp_path):
    root = str(tmp_path / "pong")
    args = [sys.executable, TRAIN, *TINY, "--num_iterations=3", f"--root_dir={root}"]
    process = subprocess.Popen(args, env=env(), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        # Wait until iteration 0 is checkpointed, then for iteration 1 to be
        # under way, and kill without warning.
        while time.time() < deadline:
            if checkpoint_dirs(root) and newest_state(root)["iteration"] >= 1:
                break
            assert process.poll() is None, "the run ended before it was killed"
            time.sleep(0.5)
        time.sleep(3)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    killed_at = newest_state(root)
    assert killed_at["iteration"] in (1, 2)
    result = run(args[1:])
    assert result.returncode == 0, result.stderr[-3000:]
    table = rows(root)
    assert [int(r["iteration"]) for r in table] == [0, 1, 2]
    assert [int(r["agent_steps"]) for r in table] == [150, 300, 450]
    state = newest_state(root)
    assert state["iteration"] == 3 and state["agent_step"] == 450
    assert state["train_step"] == int(table[-1]["updates"])
    # The replay kept every step (capacity 2000 > 450); one transition per
    # interrupted episode becomes its final frame.
    assert 445 <= state["replay_size"] <= 450


@pytest.mark.parametrize("flags,message", [
    (["--penultimate=flatten", "--num_experts=4"],
     "num_experts=4 conflicts with penultimate='flatten'"),
    (["--game=Pongg"], "Pong"),
    (["--agent=dqn", "--update_period=4", "--target_update_period=10"],
     "target_update_period=10 must be a multiple of update_period=4"),
    (["--game=catch", "--noop_max=30"], "only apply to Atari games"),
])
def test_invalid_flag_combinations_name_the_flags(flags, message):
    from absl import flags as absl_flags  # pylint: disable=import-outside-toplevel
    from experiments import flag_defs  # pylint: disable=import-outside-toplevel
    parsed = absl_flags.FLAGS
    parsed.unparse_flags()
    try:
        parsed(["train.py", "--root_dir=/unused", *flags])
        with pytest.raises(ValueError, match=re.escape(message)):
            flag_defs.experiment_config_from_flags()
    finally:
        parsed.unparse_flags()


def test_invalid_flags_exit_before_any_work(tmp_path):
    root = str(tmp_path / "never")
    result = run([TRAIN, f"--root_dir={root}", "--penultimate=flatten",
                  "--num_experts=4"], timeout=300)
    assert result.returncode == 1
    assert "Invalid flags: num_experts=4 conflicts with penultimate='flatten'" in (
        result.stderr)
    assert not os.path.exists(root)
    unknown = run([TRAIN, f"--root_dir={root}", "--penultimate=mlp"], timeout=300)
    assert unknown.returncode == 1 and "--penultimate" in unknown.stderr


def test_unusable_run_directories_are_refused_and_left_as_they_are(tmp_path):
    # A root dir that is a file: exit 1, naming the flag.
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    result = run([TRAIN, "--game=catch", f"--root_dir={a_file}"], timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"--root_dir={a_file}: it is a file" in result.stderr
    assert "Traceback" not in result.stderr
    # A corrupt config.json: the run cannot be resumed (exit 2), untouched.
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{truncated")
    result = run([TRAIN, "--game=catch", f"--root_dir={corrupt}"], timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "config.json is unreadable or not JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(corrupt)) == ["config.json"]
    assert (corrupt / "config.json").read_text() == "{truncated"
    # A value out of range: exit 1, naming the flag, nothing written.
    never = tmp_path / "never"
    result = run([TRAIN, "--capacity_factor=nan", f"--root_dir={never}"], timeout=300)
    assert result.returncode == 1
    assert "capacity_factor must be a finite number" in result.stderr
    assert not never.exists()
    missing = run([TRAIN, f"--flagfile={tmp_path}/missing.flags", f"--root_dir={never}"],
                  timeout=300)
    assert missing.returncode == 1 and "missing.flags" in missing.stderr
    assert "Traceback" not in missing.stderr
