"""Every condition flag file and figure in experiments/configs/.

Each flag file is parsed with the train binary's flags, checked against what
its name promises, and its network and agent are built at a tiny width on
the 84x84x4 Atari observation spec.
"""

import os
import re

import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from tf_softmoe.runs import conditions
from tf_softmoe import agents
from tf_softmoe import networks

FLAGFILES = conditions.all_flagfiles()
NAME = re.compile(
    r"(?P<agent>dqn|rainbow|der)_(?P<encoder>nature|impala)_"
    r"(?P<block>flatten_x\d+|softmoe\d+|scaled_softmoe1|tokenized_(?:sum|avg)_x\d+|"
    r"gap_x\d+|top1_moe|expert_choice)"
    r"(?:_(?P<tokenizer>per_feat|per_patch|shuffled))?"
    r"(?:_(?P<slots>slots10pct|slot1))?")
# Tiny widths: what the test checks is that every combination builds.
TINY = ("--hidden_units=8", "--replay_capacity=1000", "--min_replay_history=100")


def expected_network(match):
    """NetworkConfig fields a condition's name promises."""
    block = match["block"]
    fields = {"encoder": match["encoder"], "tokenizer": match["tokenizer"] or "per_conv",
              "capacity_factor": 0.1 if match["slots"] == "slots10pct" else 1.0,
              "num_slots": 1 if match["slots"] == "slot1" else None}
    scale = re.search(r"_x(\d+)$", block)
    if block.startswith("flatten") or block.startswith("gap"):
        fields.update(penultimate=block.split("_")[0], scale=int(scale.group(1)))
    elif block.startswith("tokenized"):
        fields.update(penultimate=block.rsplit("_", 1)[0], scale=int(scale.group(1)))
    elif block == "scaled_softmoe1":
        fields.update(penultimate="softmoe", num_experts=1, scale=4)
    elif block.startswith("softmoe"):
        fields.update(penultimate="softmoe", num_experts=int(block[7:]), scale=1)
    elif block == "top1_moe":
        fields.update(penultimate="topk_moe", num_experts=4, top_k=1, scale=1)
    else:
        fields.update(penultimate="expert_choice", num_experts=4, scale=1)
    return fields


def test_the_conditions_of_the_issue_exist():
    names = {conditions.condition_name(path) for path in FLAGFILES}
    blocks = ("flatten_x1", "flatten_x4", "softmoe1", "softmoe4", "softmoe8",
              "scaled_softmoe1", "tokenized_sum_x1", "tokenized_sum_x4",
              "tokenized_avg_x1", "tokenized_avg_x4", "gap_x1", "gap_x4", "top1_moe",
              "expert_choice")
    for agent in ("dqn", "rainbow", "der"):
        for encoder in ("nature", "impala"):
            for block in blocks:
                assert f"{agent}_{encoder}_{block}" in names
    for study in ("softmoe4_per_feat", "softmoe4_per_patch", "softmoe4_shuffled",
                  "softmoe4_slots10pct", "softmoe4_slot1", "scaled_softmoe1_slots10pct",
                  "scaled_softmoe1_slot1"):
        assert f"rainbow_impala_{study}" in names


@pytest.mark.parametrize("flagfile", FLAGFILES, ids=conditions.condition_name)
def test_flagfile_parses_to_what_its_name_says(flagfile):
    name = conditions.condition_name(flagfile)
    match = NAME.fullmatch(name)
    assert match, f"{name} does not follow <agent>_<encoder>_<block>[_<study>]"
    config = conditions.config_for(flagfile, game="Pong", seed=3)
    assert (config.game, config.schedule.seed) == ("Pong", 3)
    for field, value in expected_network(match).items():
        assert getattr(config.network, field) == value, (name, field)
    preset = agents.AgentConfig.preset(match["agent"])
    assert config.agent == preset, name
    if match["agent"] == "der":
        assert config.protocol == "der"
        assert (config.schedule.num_iterations, config.schedule.steps_per_iteration) == (
            10, 10_000)
    else:
        assert config.protocol == "dopamine"
        assert (config.schedule.num_iterations, config.schedule.steps_per_iteration) == (
            200, 250_000)


def test_flagfiles_leave_run_flags_to_the_sweep():
    for flagfile in FLAGFILES:
        with open(flagfile) as handle:
            text = handle.read()
        for flag in conditions.RUN_FLAGS:
            assert not re.search(rf"^--{flag}=", text, re.MULTILINE), (flagfile, flag)


def atari_specs():
    observation = tensor_spec.BoundedTensorSpec([84, 84, 4], tf.uint8, 0, 255)
    action = tensor_spec.BoundedTensorSpec([], tf.int64, 0, 5)
    return ts.time_step_spec(observation), action


def output_shape(config):
    """Q-values [actions] or C51 logits [actions, atoms] of one observation."""
    atoms = [config.network.num_atoms] if config.network.head == "c51" else []
    return [6] + atoms


def test_every_flagfile_builds_its_network_at_tiny_width():
    # The network exactly as the config describes it and make_agent builds
    # it; building runs it once on the Atari spec.
    # Rainbow and DER share their networks, so each distinct one is built once.
    time_step_spec, action_spec = atari_specs()
    built = {}
    for flagfile in FLAGFILES:
        config = conditions.config_for(flagfile, extra_flags=TINY)
        network_config = config.network
        if network_config not in built:
            q_network = networks.build_q_network(
                network_config, time_step_spec.observation, action_spec)
            built[network_config] = q_network.create_variables().shape.as_list()
        assert built[network_config] == output_shape(config), flagfile
    assert len(built) >= len(FLAGFILES) // 3 * 2


@pytest.mark.parametrize("agent", ["dqn", "rainbow", "der"])
@pytest.mark.parametrize("encoder", ["nature", "impala"])
def test_agents_build_from_flagfiles_at_tiny_width(agent, encoder):
    # Beyond its network (built above for every flag file), an agent depends
    # only on its AgentConfig, one per preset.
    time_step_spec, action_spec = atari_specs()
    for block in ("softmoe4",):
        flagfile = conditions.find_flagfile(f"{agent}_{encoder}_{block}")
        config = conditions.config_for(flagfile, extra_flags=TINY)
        built = agents.make_agent(config.agent, config.network, time_step_spec,
                                  action_spec)
        outputs, _ = built.q_network(
            tf.zeros([2, 84, 84, 4], tf.uint8))
        assert outputs.shape.as_list() == [2] + output_shape(config)
        assert built.agent_step.numpy() == 0


def test_figures_name_existing_conditions_and_games():
    names = conditions.figure_names()
    assert "fig01_experts_and_scale" in names
    for name in names:
        figure = conditions.load_figure(name)
        assert figure.title and figure.paper, name
        assert figure.baseline in figure.conditions, name
        for condition in figure.conditions:
            assert os.path.isfile(conditions.find_flagfile(condition))
        assert len(conditions.parse_games(figure.games)) >= 20
        assert conditions.parse_seeds(figure.seeds) == [0, 1, 2, 3, 4]


def test_game_sets():
    sets = conditions.game_sets()
    assert len(sets["atari20"]) == 20 and "AirRaid" in sets["atari20"]
    assert len(sets["atari100k"]) == 26


@pytest.mark.parametrize("flagfile", [f for f in FLAGFILES
                                      if conditions.condition_name(f).startswith("der_")],
                         ids=conditions.condition_name)
def test_der_flagfiles_evaluate_like_the_reference_runner(flagfile):
    # labs/atari_100k DataEfficientAtariRunner: 100 full games with
    # epsilon_eval = 0.001 after every iteration, no cap on the phase, in 100
    # environments at once (num_eval_envs=100, one game each).
    schedule = conditions.config_for(flagfile).schedule
    assert (schedule.eval_episodes, schedule.eval_schedule, schedule.eval_max_steps,
            schedule.eval_envs) == (100, "every_iteration", None, 100)
    assert conditions.config_for(flagfile).agent.epsilon_eval == 0.001


def test_evaluation_defaults_follow_the_protocol_and_flags_override_them():
    der = conditions.find_flagfile("der_nature_flatten_x1")
    rainbow = conditions.find_flagfile("rainbow_impala_softmoe4")
    assert conditions.config_for(rainbow).schedule.eval_episodes == 0
    assert conditions.config_for(rainbow).schedule.eval_envs == 1
    assert conditions.config_for(der, extra_flags=("--eval_envs=1",)).schedule.eval_envs == 1
    with pytest.raises(ValueError, match="eval_envs"):
        conditions.config_for(der, extra_flags=("--eval_envs=0",))
    final = conditions.config_for(der, extra_flags=(
        "--eval_schedule=final", "--eval_max_steps=5000")).schedule
    assert (final.eval_schedule, final.eval_max_steps) == ("final", 5000)
    assert [final.evaluates_after(i) for i in range(10)] == [False] * 9 + [True]
    uncapped = conditions.config_for(rainbow, extra_flags=(
        "--eval_episodes=3", "--eval_max_steps=0")).schedule
    assert (uncapped.eval_episodes, uncapped.eval_max_steps) == (3, None)
    with pytest.raises(ValueError, match="eval_schedule"):
        conditions.config_for(der, extra_flags=("--eval_schedule=sometimes",))


def test_flagfile_configs_store_the_network_the_agent_builds():
    # config.json must describe the network built: Rainbow and DER are C51,
    # dueling and noisy, DQN is a plain Q head.
    for name, expected in (("rainbow_impala_softmoe4", ("c51", True, True)),
                           ("der_nature_softmoe4", ("c51", True, True)),
                           ("dqn_nature_softmoe4", ("dqn", False, False))):
        network = conditions.config_for(conditions.find_flagfile(name)).network
        assert (network.head, network.dueling, network.noisy) == expected, name


def test_atari20_cites_its_source_and_only_airraid_lacks_a_human_score():
    from tf_softmoe.metrics import atari_scores  # pylint: disable=import-outside-toplevel
    path = os.path.join(conditions.GAME_SET_DIR, "atari20.txt")
    with open(path) as handle:
        text = handle.read()
    assert "2402.08609" in text and "2410.01930" in text and "Appendix A" in text
    games = conditions.game_sets()["atari20"]
    assert len(games) == len(set(games)) == 20
    without = []
    for game in games:
        try:
            atari_scores.reference_scores(game)
        except ValueError:
            without.append(game)
    assert without == ["AirRaid"]
