"""The experiment runner on the built-in Catch game: outputs, resume,
config checks, checkpoint faults, signals, XLA."""

import csv
import dataclasses
import errno
import shutil
import glob
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_softmoe.train import checkpoints
from tf_softmoe.train import config as config_lib
from tf_softmoe.train import experiment
from tf_softmoe.train import loop
from tf_softmoe.train import summaries


def catch_config(num_iterations=2, steps=60, jit="false", eval_episodes=0,
                 eval_schedule="every_iteration", **agent_overrides):
    agent_values = dict(min_replay_history=40, update_period=2, target_update_period=20,
                        epsilon_decay_steps=100, replay_capacity=1000, batch_size=8,
                        n_step=1, v_min=-1.0, v_max=1.0, num_atoms=11,
                        # Deterministic evaluation outputs, so exported models
                        # can be compared with the run's network (by default
                        # the experts stay noisy in evaluation, as the
                        # reference's; tests/agents checks that).
                        expert_noise_in_eval=False)
    agent_values.update(agent_overrides)
    return config_lib.ExperimentConfig.preset(
        "rainbow", game="catch", env_overrides={"rows": 6, "columns": 3,
                                                "observation_shape": [12, 6, 1]},
        encoder="nature", penultimate="softmoe", num_experts=2, hidden_units=8,
        num_iterations=num_iterations, steps_per_iteration=steps,
        diagnostics_period=5, jit_compile=jit, eval_episodes=eval_episodes,
        eval_schedule=eval_schedule, **agent_values)


def read_rows(root):
    with open(os.path.join(root, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def event_tags(root):
    tags = set()
    for path in glob.glob(os.path.join(root, "tensorboard", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.add(value.tag)
    return tags


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One 2-iteration run (with evaluation), shared read-only by the tests;
    tests that change it work on a copy."""
    root = str(tmp_path_factory.mktemp("finished") / "run")
    run = experiment.Experiment(catch_config(eval_episodes=2), root,
                                handle_signals=False)
    run.run()
    return root, run


def copy_of(finished_run, tmp_path):
    root = str(tmp_path / "run")
    shutil.copytree(finished_run[0], root)
    return root


def checkpoint_values(path):
    """{name: value} of the TF part of checkpoint directory `path`."""
    prefix = os.path.join(path, "tf", "ckpt")
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(prefix)
            if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


def sigterm_at_call(run, call, signum=signal.SIGTERM):
    """Makes the run's trainer send itself `signum` at its `call`-th stop
    check (after `call - 1` agent steps of the first phase it runs)."""
    original = run.trainer.run

    def run_then_signal(num_steps, stats=None, should_stop=None, monitor=None):
        calls = {"n": 0}

        def stop_check():
            calls["n"] += 1
            if calls["n"] == call:
                os.kill(os.getpid(), signum)
            return should_stop()
        return original(num_steps, stats=stats, should_stop=stop_check,
                        monitor=monitor)

    run.trainer.run = run_then_signal


def test_run_writes_metrics_events_checkpoints_and_exports(finished_run):
    root, run = finished_run
    rows = read_rows(root)
    assert [int(r["iteration"]) for r in rows] == [0, 1]
    assert [int(r["agent_steps"]) for r in rows] == [60, 120]
    for column in ("train_episode_return", "train_loss", "q_mean", "srank",
                   "dormant_fraction_tau_0", "dormant_fraction_tau_0.025",
                   "expert_gate_0", "tokens_per_expert_1", "router_grad_norm",
                   "parameter_norm", "train_steps_per_second", "replay_size",
                   "eval_episode_return", "train_td_error_mean"):
        assert rows[-1][column] not in ("", None), column
    tags = event_tags(root)
    for tag in ("train/episode_return", "train/loss", "train/q_mean",
                "diagnostics/srank", "diagnostics/dormant_percent_tau_0",
                "experts/gate_0", "experts/tokens_per_expert_0", "router/grad_norm",
                "perf/agent_steps_per_second", "perf/replay_size",
                "eval/episode_return", "custom_scalars__config__",
                "_hparams_/session_start_info"):
        assert tag in tags, tag
    assert len(run.checkpoints.checkpoints()) == 2
    state = json.load(open(os.path.join(run.checkpoints.checkpoints()[0], "state.json")))
    assert state["iteration"] == 2 and state["agent_step"] == 120 and state["complete"]
    assert os.path.exists(os.path.join(root, "policy", "saved_model.pb"))
    model = tf.keras.models.load_model(os.path.join(root, "q_network.keras"))
    obs = np.zeros((2, 12, 6, 1), np.uint8)
    np.testing.assert_allclose(model(obs), run.agent.q_network(obs)[0], atol=1e-5)
    policy = tf.saved_model.load(os.path.join(root, "policy"))
    assert policy is not None


def test_resume_continues_without_duplicating_iterations(finished_run, tmp_path):
    root = copy_of(finished_run, tmp_path)
    # num_iterations may grow on resume; evaluation may be switched off.
    resumed = experiment.Experiment(catch_config(num_iterations=3), root,
                                    handle_signals=False, export_on_exit=False)
    assert resumed.restore() is not None
    assert resumed.iteration == 2
    assert int(resumed.agent.agent_step.numpy()) == 120
    assert len(resumed.replay) >= 118
    original = finished_run[1]
    for a, b in zip(resumed.agent.q_network.variables,
                    original.agent.q_network.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    resumed.run()
    rows = read_rows(root)
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2]
    assert [int(r["agent_steps"]) for r in rows] == [60, 120, 180]
    assert int(resumed.agent.train_step_counter.numpy()) == int(rows[-1]["updates"])


def test_a_seed_reproduces_its_run_and_another_seed_does_not(finished_run, tmp_path):
    """On one machine, the same config and seed give the same numbers: a
    run's seed covers Python's, NumPy's and TF's random streams (tf-keras
    seeds unseeded initializers from Python's)."""
    timing = ("wall_time", "train_steps_per_second", "eval_steps_per_second")

    def learning_columns(root):
        return [{k: v for k, v in row.items() if k not in timing}
                for row in read_rows(root)]

    # Whatever ran before in this process (another run, a user's own
    # set_random_seed) must not reach the run.
    tf.keras.utils.set_random_seed(123)
    tf.keras.initializers.GlorotUniform()((3, 3))
    again = str(tmp_path / "again")
    experiment.Experiment(catch_config(eval_episodes=2), again, handle_signals=False,
                          export_on_exit=False).run()
    assert learning_columns(again) == learning_columns(finished_run[0])
    other = str(tmp_path / "other_seed")
    experiment.Experiment(dataclasses.replace(
        catch_config(eval_episodes=2),
        schedule=dataclasses.replace(catch_config().schedule, seed=1)),
        other, handle_signals=False, export_on_exit=False).run()
    assert learning_columns(other) != learning_columns(finished_run[0])


def test_changed_config_is_refused_unless_allowed(finished_run, tmp_path):
    root = copy_of(finished_run, tmp_path)
    other = catch_config(num_iterations=1, learning_rate=1e-3)
    with pytest.raises(experiment.ConfigMismatchError,
                       match=r"agent.learning_rate: stored 6.25e-05, now 0.001"):
        experiment.Experiment(other, root, handle_signals=False)
    experiment.Experiment(other, root, handle_signals=False, allow_config_change=True)
    assert experiment.read_stored_config(root) == other


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(finished_run, tmp_path,
                                                             caplog):
    root = copy_of(finished_run, tmp_path)
    manager = checkpoints.CheckpointManager(os.path.join(root, "checkpoints"))
    newest, previous = manager.checkpoints()
    with open(os.path.join(newest, "tf", "ckpt.index"), "wb") as f:
        f.write(b"garbage")
    run = experiment.Experiment(catch_config(num_iterations=2), root,
                                handle_signals=False, export_on_exit=False)
    assert run.restore() == previous
    assert run.iteration == 1
    assert "unreadable" in caplog.text


def test_full_disk_keeps_the_previous_checkpoint(finished_run, tmp_path, monkeypatch):
    root = copy_of(finished_run, tmp_path)
    run = experiment.Experiment(catch_config(), root, handle_signals=False,
                                export_on_exit=False)
    run.restore()
    before = run.checkpoints.checkpoints()

    def no_space(directory):
        raise OSError(errno.ENOSPC, "No space left on device", directory)

    monkeypatch.setattr(run.replay, "save", no_space)
    with pytest.raises(checkpoints.CheckpointError,
                       match=r"No space left on device.*previous checkpoint .* is "
                             r"intact.*disk is full"):
        run.save_checkpoint()
    assert run.checkpoints.checkpoints() == before
    assert not [p for p in os.listdir(os.path.join(root, "checkpoints")) if ".tmp-" in p]
    monkeypatch.undo()
    assert run.restore() == before[0]


# SIGUSR2: Slurm's warning before it preempts or time-limits a job.
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR2],
                         ids=["SIGTERM", "SIGUSR2"])
def test_signal_checkpoints_mid_iteration_and_resume_finishes_it(tmp_path, signum):
    root = str(tmp_path / "run")
    handlers = {s: signal.getsignal(s) for s in experiment.STOP_SIGNALS}
    run = experiment.Experiment(catch_config(num_iterations=2), root,
                                export_on_exit=False)
    sigterm_at_call(run, 25, signum)
    run.run()
    assert run.stopped_by_signal == signum
    state = json.load(open(os.path.join(run.checkpoints.checkpoints()[0], "state.json")))
    assert state["iteration"] == 0
    assert state["partial"]["agent_steps"] == 24
    assert {s: signal.getsignal(s) for s in experiment.STOP_SIGNALS} == handlers
    resumed = experiment.Experiment(catch_config(num_iterations=2), root,
                                    export_on_exit=False)
    resumed.run()
    rows = read_rows(root)
    assert [int(r["agent_steps"]) for r in rows] == [60, 120]


def test_xla_train_step_in_a_run(tmp_path):
    root = str(tmp_path / "run")
    run = experiment.Experiment(catch_config(num_iterations=1, steps=50, jit="true"),
                                root, handle_signals=False, export_on_exit=False)
    assert run.learner.jit_compile
    run.run()
    assert float(read_rows(root)[0]["train_loss"]) > 0


def test_summary_tags_and_hparams():
    assert summaries.tag_for("train_episode_return") == "train/episode_return"
    assert summaries.tag_for("expert_gate_3") == "experts/gate_3"
    assert summaries.tag_for("dormant_fraction_tau_0.025") == (
        "diagnostics/dormant_percent_tau_0.025")
    assert summaries.tag_for("wall_time") is None
    flat = summaries.flat_hparams(catch_config())
    assert flat["agent.n_step"] == 1 and flat["network.penultimate"] == "softmoe"
    assert flat["game"] == "catch"


def test_unknown_game_lists_close_names():
    with pytest.raises(ValueError, match="Pong"):
        config_lib.ExperimentConfig(game="Pongg")


def test_config_json_round_trip():
    config = catch_config()
    assert config_lib.ExperimentConfig.from_json(config.to_json()) == config
    assert not config_lib.config_differences(config, config)


def test_config_json_describes_the_network_built(finished_run, tmp_path):
    # A Rainbow run builds the C51, dueling, noisy network its config
    # describes; config.json says so.
    root, run = finished_run
    stored = json.load(open(os.path.join(root, "config.json")))["network"]
    assert (stored["head"], stored["dueling"], stored["noisy"]) == ("c51", True, True)
    assert stored["num_atoms"] == 11
    built = run.agent.q_network.config
    assert built == experiment.read_stored_config(root).network
    # A config.json written when the agent owned atoms, dueling and noise
    # (and the network section kept whatever was passed) still reads, the
    # agent's values winning, and resumes without a config mismatch.
    old_root = copy_of(finished_run, tmp_path)
    values = json.load(open(os.path.join(old_root, "config.json")))
    network = values["network"]
    values["agent"].update({name: network[name] for name in (
        "num_atoms", "dueling", "noisy", "noisy_sigma0", "expert_noise_in_eval")})
    network.update(head="dqn", dueling=False, noisy=False, num_atoms=51)
    with open(os.path.join(old_root, "config.json"), "w") as f:
        json.dump(values, f)
    assert experiment.read_stored_config(old_root) == experiment.read_stored_config(root)
    experiment.Experiment(catch_config(), old_root, handle_signals=False,
                          export_on_exit=False)


def test_every_iteration_schedule_evaluates_each_iteration(finished_run):
    rows = read_rows(finished_run[0])
    assert [int(r["eval_episodes"]) for r in rows] == [2, 2]
    assert all(r["eval_episode_length"] not in ("", None) for r in rows)


def test_evaluation_plays_in_several_environments_and_closes_them(tmp_path, monkeypatch):
    root = str(tmp_path / "run")
    config = catch_config(num_iterations=1, eval_episodes=4, eval_envs=3)
    run = experiment.Experiment(config, root, handle_signals=False, export_on_exit=False)
    played = []
    evaluate = loop.evaluate

    def spy(envs, *args, **kwargs):
        played.append(list(envs))
        return evaluate(envs, *args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", spy)
    run.run()
    assert int(read_rows(root)[0]["eval_episodes"]) == 4
    assert len(played) == 1 and len(played[0]) == 3
    assert run.eval_envs == []  # closed when the run returned


def test_final_schedule_evaluates_once_and_a_cut_evaluation_resumes_alone(tmp_path):
    # SIGTERM in the middle of the final evaluation: the trained iteration is
    # kept, the evaluation is played again in full on resume (not lost, not
    # counted twice), and a further resume plays nothing.
    root = str(tmp_path / "run")
    config = catch_config(eval_episodes=3, eval_schedule="final")
    run = experiment.Experiment(config, root, export_on_exit=False)
    policy = run._eval_policy  # pylint: disable=protected-access
    calls = {"n": 0}

    class SignalInTheSecondGame:
        def actions(self, time_steps, max_batch_size=None):
            calls["n"] += 1
            if calls["n"] == 7:  # inside the second game (Catch games last 5 steps)
                os.kill(os.getpid(), signal.SIGTERM)
            return policy.actions(time_steps, max_batch_size)

    run._eval_policy = SignalInTheSecondGame()  # pylint: disable=protected-access
    run.run()
    assert run.stopped_by_signal == signal.SIGTERM
    rows = read_rows(root)
    assert len(rows) == 1 and not rows[0].get("eval_episodes")  # none after iteration 0
    state = json.load(open(os.path.join(run.checkpoints.checkpoints()[0], "state.json")))
    assert (state["iteration"], state["agent_step"], state["partial"]["agent_steps"]) == (
        1, 120, 60)

    before = checkpoint_values(run.checkpoints.checkpoints()[0])  # the newest
    resumed = experiment.Experiment(config, root, export_on_exit=False)
    resumed.run()
    rows = read_rows(root)
    assert [int(r["agent_steps"]) for r in rows] == [60, 120]
    assert int(rows[1]["eval_episodes"]) == 3
    # The checkpoint rewritten after the evaluation, with no update since the
    # restore, keeps everything, Adam's moments included.
    after = checkpoint_values(resumed.checkpoints.checkpoints()[0])
    assert sorted(after) == sorted(before)
    assert any("_optimizer/_variables" in name for name in after)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    assert "eval/episode_return" in event_tags(root)

    again = experiment.Experiment(config, root, export_on_exit=False)
    again._evaluate = None  # pylint: disable=protected-access  (calling it would fail)
    again.run()
    assert len(read_rows(root)) == 2


@pytest.mark.parametrize("text", ["{corrupt", '{"foreign": true}'])
def test_corrupt_or_foreign_config_json_is_refused_untouched(tmp_path, text):
    root = tmp_path / "run"
    root.mkdir()
    (root / "config.json").write_text(text)
    with pytest.raises(experiment.ConfigMismatchError, match="config.json"):
        experiment.Experiment(catch_config(), str(root))
    assert (root / "config.json").read_text() == text
    assert os.listdir(root) == ["config.json"]


def test_root_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(experiment.UnusableRootDirError, match="is a file"):
        experiment.Experiment(catch_config(), str(path))


# The train program's flags for a tiny Catch run (the in-process run below
# builds the same config from them).
CATCH_FLAGS = ["--agent=dqn", "--game=catch", "--encoder=nature", "--penultimate=flatten",
               "--hidden_units=8", "--num_iterations=3", "--steps_per_iteration=30",
               "--min_replay_history=20", "--replay_capacity=200", "--batch_size=8",
               "--target_update_period=8", "--eval_episodes=0", "--jit_compile=false"]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(REPO, "experiments", "train.py")


def snapshot(root):
    """{relative path: (bytes, mtime_ns)} of every file, and every directory."""
    files, directories = {}, set()
    for directory, subdirectories, names in os.walk(root):
        directories.update(os.path.relpath(os.path.join(directory, d), root)
                           for d in subdirectories)
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = (f.read(), os.stat(path).st_mtime_ns)
    return files, directories


def corrupt_data_file(checkpoint):
    data, = glob.glob(os.path.join(checkpoint, "tf", "ckpt.data-*"))
    with open(data, "r+b") as f:
        content = bytearray(f.read())
        for i in range(0, len(content), 7):
            content[i] ^= 0xFF
        f.seek(0)
        f.write(bytes(content))


def test_unreadable_checkpoints_refuse_the_train_program_and_change_nothing(tmp_path):
    from absl import flags  # pylint: disable=import-outside-toplevel
    from tf_softmoe.cli import flags as flags_lib  # pylint: disable=import-outside-toplevel
    flag_values = flags.FlagValues()
    flags_lib.define_config_flags(flag_values)
    flag_values(["train", *CATCH_FLAGS, "--num_iterations=2"])
    root = str(tmp_path / "run")
    # Two of the program's three iterations: a run to resume, with two
    # checkpoints, metrics.csv, config.json and TensorBoard files.
    run = experiment.Experiment(flags_lib.config_from_flags(flag_values), root,
                                handle_signals=False, export_on_exit=False)
    run.run()
    assert len(run.checkpoints.checkpoints()) == 2
    for checkpoint in run.checkpoints.checkpoints():
        corrupt_data_file(checkpoint)
    with pytest.raises(checkpoints.CheckpointError, match="unreadable"):
        checkpoints.read_checked(run.checkpoints.checkpoints()[0])
    before = snapshot(root)
    assert {"config.json", "metrics.csv"} <= set(before[0])
    assert any(path.startswith("tensorboard") for path in before[0])

    result = subprocess.run(
        [sys.executable, TRAIN, *CATCH_FLAGS, f"--root_dir={root}"],
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                 PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", "")))
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert "cannot be resumed: none of its checkpoints is readable" in error
    assert "Traceback" not in result.stderr
    for checkpoint in run.checkpoints.checkpoints():
        assert f"Checkpoint {checkpoint} is unreadable" in error
    assert snapshot(root) == before

    # The library refuses it the same way, before writing anything.
    with pytest.raises(checkpoints.CheckpointError, match="none of its checkpoints"):
        experiment.Experiment(flags_lib.config_from_flags(flag_values), root)
    assert snapshot(root) == before


def test_checkpoint_that_does_not_fit_the_config_is_refused_unchanged(finished_run,
                                                                      tmp_path):
    root = copy_of(finished_run, tmp_path)
    before = snapshot(root)
    base = catch_config(num_iterations=3)
    wider = dataclasses.replace(
        base, network=dataclasses.replace(base.network, hidden_units=16))
    with pytest.raises(checkpoints.CheckpointError,
                       match=r"cannot be resumed with this configuration.*does not "
                             r"fit the agent"):
        experiment.Experiment(wider, root, handle_signals=False,
                              allow_config_change=True)
    assert snapshot(root) == before
