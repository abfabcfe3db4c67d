"""tf_softmoe.config and the flags generated from it: one owner per field,
presets, round trips, old config.json files, and every bad value refused
with a message naming the flag and the valid range."""

import dataclasses
import json

from absl import flags
import pytest

from tf_softmoe import config as config_lib
from tf_softmoe.cli import flags as flags_lib

# As experiments/configs/rainbow_impala_softmoe4.flags (tested with every
# flag file in tests/experiments/test_configs.py).
FLAGFILE_TEXT = """# a comment line
--agent=rainbow
--encoder=impala
--penultimate=softmoe
--num_experts=4
--tokenizer=per_conv
"""


@pytest.fixture(name="flagfile")
def fixture_flagfile(tmp_path):
    path = tmp_path / "rainbow_impala_softmoe4.flags"
    path.write_text(FLAGFILE_TEXT)
    return str(path)


def parse(*argv):
    flag_values = flags.FlagValues()
    flags_lib.define_config_flags(flag_values)
    flag_values(["tfsm-train", *argv])
    return flag_values


def test_each_field_has_one_owner_and_a_documented_flag():
    owners = {}
    for cls in (config_lib.AgentConfig, config_lib.NetworkConfig,
                config_lib.ScheduleConfig):
        docs = flags_lib._config.field_docs(cls)  # pylint: disable=protected-access
        for field in dataclasses.fields(cls):
            assert field.name not in owners, (field.name, owners.get(field.name), cls)
            owners[field.name] = cls
            assert docs.get(field.name), (cls.__name__, field.name)
    assert owners["noisy_sigma0"] is owners["num_atoms"] is config_lib.NetworkConfig
    flag_values = parse()
    for name in flags_lib.config_flag_names():
        assert name in flag_values and flag_values[name].help
    for name in ("reward_clip", "max_gradient_norm", "epsilon_start", "frame_skip",
                 "impala_blocks", "impala_stack_sizes", "per_sample_noise"):
        assert name in flag_values, name
    assert flag_values["learning_rate"].default == config_lib.AgentConfig.learning_rate


def test_presets_set_agent_network_schedule_and_protocol_together():
    der = config_lib.ExperimentConfig.preset("der", game="Breakout")
    assert (der.protocol, der.agent.n_step, der.network.head, der.network.noisy) == (
        "der", 10, "c51", True)
    assert (der.schedule.num_iterations, der.schedule.eval_episodes) == (10, 100)
    dqn = config_lib.ExperimentConfig.preset("dqn", noisy_sigma0=0.5, noop_max=30)
    assert (dqn.network.head, dqn.network.noisy_sigma0) == ("dqn", 0.5)
    assert dqn.env_overrides == {"noop_max": 30}
    with pytest.raises(ValueError, match="Unknown config fields"):
        config_lib.ExperimentConfig.preset("dqn", sigma=1.0)


def test_building_checks_and_rewrites_nothing():
    with pytest.raises(ValueError, match="needs the network head 'c51'"):
        config_lib.ExperimentConfig(network=config_lib.NetworkConfig(head="dqn"))
    noisy_dqn = config_lib.ExperimentConfig.preset("dqn", noisy=True, dueling=True)
    assert noisy_dqn.network.noisy and noisy_dqn.network.dueling


@pytest.mark.parametrize("preset", config_lib.PRESETS)
def test_config_json_round_trips(preset):
    config = config_lib.ExperimentConfig.preset(
        preset, game="ms_pacman", dormant_taus=[0.1], impala_stack_sizes=[8, 8],
        reward_clip=None, noop_max=5)
    again = config_lib.ExperimentConfig.from_json(config.to_json())
    assert again == config and again.to_json() == config.to_json()


def test_an_old_config_json_maps_once_with_the_agents_values_winning():
    values = config_lib.ExperimentConfig.preset("rainbow").to_dict()
    network = values["network"]
    values["agent"].update(num_atoms=21, dueling=True, noisy=False, noisy_sigma0=0.3,
                           expert_noise_in_eval=False)
    network.update(head="dqn", num_atoms=51, dueling=False, noisy=True)
    old = config_lib.ExperimentConfig.from_dict(values)
    assert (old.network.head, old.network.num_atoms, old.network.dueling,
            old.network.noisy, old.network.noisy_sigma0,
            old.network.expert_noise_in_eval) == ("c51", 21, True, False, 0.3, False)


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('["a list"]', "JSON object"),
    ('{"model": "resnet"}', "not an ExperimentConfig"),
])
def test_corrupt_or_foreign_config_json_is_a_clear_error(text, message):
    with pytest.raises(ValueError, match=message):
        config_lib.ExperimentConfig.from_json(text)


def test_flags_override_only_what_they_set():
    config = flags_lib.config_from_flags(parse("--agent=der", "--num_experts=8",
                                               "--v_max=5", "--eval_max_steps=0"))
    assert config == config_lib.ExperimentConfig.preset(
        "der", num_experts=8, v_max=5.0, v_min=-5.0, eval_max_steps=None)
    assert flags_lib.config_from_flags(parse()) == config_lib.ExperimentConfig.preset(
        "rainbow")
    optional = flags_lib.config_from_flags(parse("--reward_clip=none",
                                                 "--max_gradient_norm=10"))
    assert (optional.agent.reward_clip, optional.agent.max_gradient_norm) == (None, 10.0)


def test_deprecated_alias_sets_the_field_and_conflicts_are_refused():
    assert flags_lib.config_from_flags(parse("--noise_sigma0=0.4")).network.noisy_sigma0 == 0.4
    with pytest.raises(ValueError, match="--noise_sigma0 and --noisy_sigma0"):
        flags_lib.config_from_flags(parse("--noise_sigma0=0.4", "--noisy_sigma0=0.2"))


def test_from_flagfile_reads_the_file_and_applies_overrides(flagfile):
    config = config_lib.ExperimentConfig.from_flagfile(flagfile, game="Breakout", seed=3)
    assert (config.game, config.schedule.seed, config.network.num_experts) == (
        "Breakout", 3, 4)
    with pytest.raises(ValueError, match="does not exist"):
        config_lib.ExperimentConfig.from_flagfile(flagfile + ".missing")
    with pytest.raises(ValueError, match="'root_dir' is not a config flag"):
        config_lib.ExperimentConfig.from_flagfile(flagfile, root_dir="x")
    with pytest.raises(ValueError, match="num_experts must be an integer >= 1"):
        config_lib.ExperimentConfig.from_flagfile(flagfile, num_experts=0)


@pytest.mark.parametrize("argv, message", [
    (["--capacity_factor=nan"], "capacity_factor must be a finite number"),
    (["--learning_rate=inf"], "learning_rate must be a finite number"),
    (["--num_slots=0"], "num_slots must be an integer >= 1, got 0"),
    (["--num_experts=0"], "num_experts must be an integer >= 1"),
    (["--dormant_taus=abc"], "--dormant_taus: 'abc' is not a number"),
    (["--dormant_taus=0.5,1.5"], "dormant_taus must be a finite number in [0.0, 1.0)"),
    (["--impala_stack_sizes=16,x"], "--impala_stack_sizes: 'x' is not an integer"),
    (["--gamma=1.5"], "gamma must be a finite number in [0.0, 1.0]"),
    (["--epsilon_start=-0.1"], "epsilon_start must be a finite number in [0.0, 1.0]"),
    (["--reward_clip=0"], "reward_clip must be > 0 or None"),
    (["--sticky_action_prob=1"], "sticky_action_prob must be a number in [0, 1)"),
    (["--frame_skip=0"], "frame_skip"),
    (["--replay_capacity=10"], "replay_capacity=10 must be >= min_replay_history=20000"),
    (["--min_replay_history=8"], "min_replay_history=8 must be >= batch_size=32"),
    (["--tokenizer=per_patch", "--patch_size=12"],
     "patch_size=12 does not fit the 11x11 feature map"),
    (["--encoder=nature", "--nature_padding=valid", "--tokenizer=per_patch",
      "--patch_size=8"], "choose patch_size in [1, 7]"),
    (["--game=catch", "--noop_max=3"], "--noop_max only apply to Atari games"),
    (["--game=Pongg"], "Pong"),
])
def test_every_bad_value_is_refused_naming_the_flag(argv, message):
    with pytest.raises(ValueError) as error:
        flags_lib.config_from_flags(parse(*argv))
    assert message in str(error.value)


@pytest.mark.parametrize("argv", [["--num_slots=abc"], ["--penultimate=mlp"],
                                  ["--eval_max_steps=lots"], ["--unknown_flag=1"]])
def test_values_of_the_wrong_type_are_refused_by_the_parser(argv):
    with pytest.raises(flags.Error, match=argv[0].split("=")[0].lstrip("-")):
        parse(*argv)


def test_config_flags_round_trip_through_a_flagfile(tmp_path):
    config = config_lib.ExperimentConfig.preset("dqn", scale=4, penultimate="flatten",
                                                reward_clip=None, dormant_taus=(0.1,))
    lines = ["--agent=dqn", "--scale=4", "--penultimate=flatten", "--reward_clip=none",
             "--dormant_taus=0.1"]
    path = tmp_path / "dqn.flags"
    path.write_text("\n".join(lines) + "\n")
    assert config_lib.ExperimentConfig.from_flagfile(str(path)) == config
    assert json.loads(config.to_json())["agent"]["reward_clip"] is None
