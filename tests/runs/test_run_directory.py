"""tf_softmoe.runs.run_directory: the one layout, config, metrics,
checkpoint names and status."""

import json
import os

import pytest

from tf_softmoe import agents
from tf_softmoe import networks
from tf_softmoe.runs import run_directory
from tf_softmoe.runs.run_directory import RunDirectory
from tf_softmoe.train import checkpoints
from tf_softmoe.train import config as config_lib


def small_config():
    return config_lib.ExperimentConfig(
        game="catch", agent=agents.AgentConfig.preset("dqn"),
        network=networks.NetworkConfig(encoder="nature", penultimate="flatten",
                                       hidden_units=8),
        schedule=config_lib.ScheduleConfig(num_iterations=2, steps_per_iteration=10))


def test_paths_are_the_run_layout(tmp_path):
    run = RunDirectory(tmp_path / "run")
    assert run.config_path == os.path.join(run.path, "config.json")
    assert run.metrics_path == os.path.join(run.path, "metrics.csv")
    assert run.checkpoints_dir == os.path.join(run.path, "checkpoints")
    assert run.policy_dir == os.path.join(run.path, "policy")
    assert run.q_network_path == os.path.join(run.path, "q_network.keras")
    assert run.train_log_path == os.path.join(run.path, "train.log")
    assert RunDirectory.of_policy(os.path.join(run.path, "policy") + os.sep) == run


def test_config_round_trips(tmp_path):
    run = RunDirectory(tmp_path / "run")
    config = small_config()
    run.write_config(config)
    assert run.read_config() == config
    assert not [name for name in os.listdir(run.path) if ".tmp-" in name]


@pytest.mark.parametrize("text, problem", [
    ("{not json", "not JSON"),
    (json.dumps({"some": "thing"}), "not a tf_softmoe config"),
    (json.dumps([1, 2]), "not a tf_softmoe config"),
])
def test_corrupt_or_foreign_config_is_named_with_the_fix(tmp_path, text, problem):
    run = RunDirectory(tmp_path)
    with open(run.config_path, "w") as handle:
        handle.write(text)
    with pytest.raises(run_directory.RunDirectoryError) as error:
        run.read_config()
    assert problem in str(error.value) and run.config_path in str(error.value)
    assert "another run directory" in str(error.value)


def test_config_with_bad_values_is_a_run_directory_error(tmp_path):
    run = RunDirectory(tmp_path)
    values = small_config().to_dict()
    values["protocol"] = "atari2600"
    with open(run.config_path, "w") as handle:
        json.dump(values, handle)
    with pytest.raises(run_directory.RunDirectoryError, match="protocol"):
        run.read_config()


def test_missing_config_and_file_as_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a tf_softmoe run directory"):
        RunDirectory(tmp_path).read_config()
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(run_directory.RunDirectoryError, match="is a file"):
        RunDirectory(path).create()


def test_metrics_append_read_truncate(tmp_path):
    run = RunDirectory(tmp_path)
    assert run.read_metrics() == ([], [])
    run.append_metrics({"iteration": 0, "agent_steps": 10, "loss": None})
    run.append_metrics({"iteration": 1, "agent_steps": 20, "eval_return": 3.5})
    fields, rows = run.read_metrics()
    assert fields == ["iteration", "agent_steps", "loss", "eval_return"]
    assert rows[0] == {"iteration": "0", "agent_steps": "10", "loss": "",
                       "eval_return": ""}
    assert rows[1]["eval_return"] == "3.5"
    run.truncate_metrics(1)
    assert [r["iteration"] for r in run.metrics_rows()] == ["0"]


def test_one_checkpoint_name_pattern_with_the_manager(tmp_path):
    # The manager writes {:08d}; a step past 10^8 has 9 digits and must
    # still be found by the manager and by the run directory.
    run = RunDirectory(tmp_path)
    manager = checkpoints.CheckpointManager(run.checkpoints_dir, keep=3)
    for step in (7, 123_456_789):
        manager.save(step, lambda tmp: None, {"step": step})
    os.makedirs(os.path.join(run.checkpoints_dir, "ckpt-00000009.tmp-abcd"))
    os.makedirs(os.path.join(run.checkpoints_dir, "ckpt-12"))
    assert [n for n, _ in run.checkpoints()] == [123_456_789, 7]
    assert [os.path.basename(p) for p in manager.checkpoints()] == [
        "ckpt-123456789", "ckpt-00000007"]
    assert run.newest_checkpoint_step() == 123_456_789
    assert run_directory.checkpoint_number("ckpt-00000150") == 150
    assert run_directory.checkpoint_number("ckpt-150") is None


def test_status(tmp_path):
    run = RunDirectory(tmp_path / "run")
    assert run.status(2) == run_directory.RunStatus("new")
    os.makedirs(run.path)
    assert run.status(2).state == "new"
    os.makedirs(os.path.join(run.checkpoints_dir, "ckpt-00000150"))
    assert run.status(2) == run_directory.RunStatus("partial", 0, 150)
    run.append_metrics({"iteration": 0, "agent_steps": 100})
    run.append_metrics({"iteration": 1, "agent_steps": 200})
    assert run.status(2) == run_directory.RunStatus("partial", 2, 200)
    os.makedirs(run.policy_dir)
    with open(os.path.join(run.policy_dir, "saved_model.pb"), "wb") as handle:
        handle.write(b"x")
    assert run.status(2) == run_directory.RunStatus("finished", 2, 200)
    assert run.status(3).state == "partial"
