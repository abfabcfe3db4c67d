"""The learner under tf.distribute, on two logical CPU devices: a mirrored
update equals the single-device update; runs resume under and across
strategies; --distribution=tpu without a TPU is a one-line error.

The two logical devices must be set before TensorFlow initialises its
devices, which this pytest session has long done, so each scenario runs in
a fresh Python process (distribution_scenarios.py)."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from tf_softmoe import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOLERANCE = 1e-5


def _env():
    values = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    values["PYTHONPATH"] = REPO + os.pathsep + values.get("PYTHONPATH", "")
    return values


def _scenario(*args):
    result = subprocess.run(
        [sys.executable, "-m", "tests.train.distribution_scenarios", *args],
        capture_output=True, text=True, timeout=900, env=_env(), cwd=REPO, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def equality():
    return _scenario("train_step_equality")


@pytest.mark.parametrize("preset", ["dqn", "rainbow"])
@pytest.mark.parametrize("jit", ["false", "true"])
def test_mirrored_step_equals_the_single_device_step(equality, preset, jit):
    assert equality["replicas"] == 2
    diffs = equality[f"{preset}_jit_{jit}"]
    for name in ("loss", "priorities", "td_error", "weights", "target_weights"):
        assert diffs[name] < TOLERANCE, (name, diffs)
    # The updates did move the weights, by far more than the differences.
    assert diffs["weights_moved"] > 1e-4
    assert diffs["updates"] == [2, 2]
    # Priorities for the whole global batch, in its order.
    assert diffs["priorities_shape"] == [8]


def test_runs_resume_under_and_across_strategies(tmp_path):
    result = _scenario("resume_across_strategies", str(tmp_path / "run"))
    parts = result["parts"]
    assert [p["distribution"] for p in parts] == ["none", "mirrored", "mirrored", "none"]
    assert [p["replicas"] for p in parts] == [1, 2, 2, 1]
    assert parts[2]["jit_compile"] is True
    for number, part in enumerate(parts[1:], start=1):
        # Networks, target network and optimizer state as the previous part
        # (another strategy in two of the three) left them.
        assert part["restored_iteration"] == number
        assert part["restored_diff"] == 0.0, part
    # Counters carry on: each part adds its updates and agent steps.
    assert [p["agent_steps"] for p in parts] == [44, 88, 132, 176]
    updates = [p["updates"] for p in parts]
    assert updates == sorted(updates) and len(set(updates)) == 4
    assert all(p["optimizer_iterations"] == p["updates"] for p in parts)
    assert result["iterations"] == ["0", "1", "2", "3"]
    assert result["exported"]


def test_tpu_without_a_tpu_is_a_one_line_error(tmp_path):
    root = tmp_path / "tpu_run"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "experiments", "train.py"),
         "--distribution=tpu", "--agent=dqn", "--game=catch", f"--root_dir={root}"],
        capture_output=True, text=True, timeout=600, env=_env(), cwd=REPO, check=False)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "--distribution=tpu" in result.stderr and "tensorflow-tpu" in result.stderr
    assert not root.exists()  # nothing written


def test_distribution_is_validated_and_may_change_on_resume():
    with pytest.raises(ValueError, match="distribution"):
        config_lib.ScheduleConfig(distribution="multi_gpu")
    with pytest.raises(ValueError, match="tpu_address"):
        config_lib.ScheduleConfig(distribution="tpu", tpu_address=" ")
    stored = config_lib.ExperimentConfig.preset("dqn", game="catch")
    resumed = stored.replace(schedule=dataclasses.replace(
        stored.schedule, distribution="mirrored", tpu_address="my-tpu"))
    assert config_lib.config_differences(stored, resumed) == {}


def test_strategy_resolution_and_the_batch_split():
    import types  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tf_softmoe.train import distribution  # pylint: disable=import-outside-toplevel
    strategy = distribution.resolve_strategy("mirrored")
    assert distribution.resolve_strategy("mirrored") is strategy  # once per process
    assert distribution.is_distributed(strategy)
    assert not distribution.is_distributed(distribution.resolve_strategy("none"))
    assert not distribution.is_distributed(tf.distribute.get_strategy())
    with pytest.raises(distribution.DistributionError, match="one of"):
        distribution.resolve_strategy("multi_gpu")
    three = types.SimpleNamespace(num_replicas_in_sync=3)
    distribution.check_batch_split(33, three)
    with pytest.raises(distribution.DistributionError, match="multiple of 3"):
        distribution.check_batch_split(32, three)
