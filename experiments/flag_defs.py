"""The flags of the tf_softmoe binaries and their translation into an
`ExperimentConfig`. Flags left unset take the agent preset's value (the
paper's defaults); `--flagfile` (absl's own) reads a file of flags."""


from absl import flags

from tf_softmoe import agents
from tf_softmoe import networks
from tf_softmoe.train import config as config_lib

FLAGS = flags.FLAGS

def define_flags(flag_values=FLAGS):
    """Defines the train flags on `flag_values` (the global FLAGS by
    default; a fresh `flags.FlagValues` parses a run's flags without
    touching them: `tf_softmoe.runs.conditions.config_for`)."""
    flags.DEFINE_enum("agent", "rainbow", list(agents.PRESETS),
                      "Agent preset: dqn, rainbow (main study) or der (Atari 100k).", flag_values=flag_values)
    flags.DEFINE_string("game", "Pong", "Atari game (Pong, ms_pacman, ALE/Pong-v5) or 'catch'.", flag_values=flag_values)
    flags.DEFINE_enum("protocol", None, list(config_lib.PROTOCOLS),
                      "Environment protocol; default: 'der' for --agent=der, else 'dopamine'.", flag_values=flag_values)
    flags.DEFINE_float("sticky_action_prob", None, "ALE sticky-action probability.", flag_values=flag_values)
    flags.DEFINE_boolean("terminal_on_life_loss", None, "Life loss ends a learning episode.", flag_values=flag_values)
    flags.DEFINE_integer("noop_max", None, "Random no-op starts, up to this many frames.", flag_values=flag_values)
    flags.DEFINE_boolean("full_action_space", None, "Use all 18 ALE actions.", flag_values=flag_values)
    flags.DEFINE_integer("max_episode_steps", None, "Episode cap in agent steps (27 000).", flag_values=flag_values)

    # Network.
    flags.DEFINE_enum("encoder", "impala", list(networks.ENCODERS), "Conv encoder.", flag_values=flag_values)
    flags.DEFINE_enum("nature_padding", "same", ["same", "valid"], "Nature CNN padding.", flag_values=flag_values)
    flags.DEFINE_integer("impala_width", 1, "Channel multiplier of the Impala encoder.", flag_values=flag_values)
    flags.DEFINE_enum("penultimate", "softmoe", list(networks.PENULTIMATES),
                      "Penultimate block.", flag_values=flag_values)
    flags.DEFINE_enum("tokenizer", "per_conv", list(networks.TOKENIZER_KINDS),
                      "Tokenizer of the tokenized blocks.", flag_values=flag_values)
    flags.DEFINE_integer("patch_size", 3, "PerPatch patch size.", flag_values=flag_values)
    flags.DEFINE_enum("patch_embedding", "conv", ["conv", "avg_pool"], "PerPatch embedding.", flag_values=flag_values)
    flags.DEFINE_integer("patch_embedding_dim", None, "PerPatch conv embedding width.", flag_values=flag_values)
    flags.DEFINE_integer("shuffle_seed", 0, "Seed of the Shuffled tokenizer's permutation.", flag_values=flag_values)
    flags.DEFINE_integer("num_experts", None, "Experts of a MoE block (default 4).", flag_values=flag_values)
    flags.DEFINE_integer("scale", 1, "Width multiplier k: hidden 512·k (per expert for MoE).", flag_values=flag_values)
    flags.DEFINE_integer("hidden_units", 512, "Base hidden width.", flag_values=flag_values)
    flags.DEFINE_float("capacity_factor", 1.0, "Slots p = ceil(m·c/n).", flag_values=flag_values)
    flags.DEFINE_integer("num_slots", None, "SoftMoE slots per expert (overrides capacity).", flag_values=flag_values)
    flags.DEFINE_boolean("normalize", False, "SoftMoE l2 normalisation with a learned scale.", flag_values=flag_values)
    flags.DEFINE_integer("top_k", 1, "Experts per token for topk_moe.", flag_values=flag_values)
    flags.DEFINE_boolean("mixed_precision", False, "bfloat16 encoder and block (GPU/TPU).", flag_values=flag_values)

    # Agent (unset: the preset's value).
    for _name, _kind, _help in (
            ("learning_rate", float, "Adam learning rate."),
            ("adam_epsilon", float, "Adam epsilon."),
            ("gamma", float, "Discount."),
            ("n_step", int, "n-step return."),
            ("batch_size", int, "Minibatch size."),
            ("replay_capacity", int, "Replay capacity (transitions)."),
            ("min_replay_history", int, "Agent steps before learning starts."),
            ("update_period", int, "Agent steps between updates."),
            ("target_update_period", int, "Agent steps between target syncs."),
            ("epsilon_end", float, "Final training epsilon."),
            ("epsilon_decay_steps", int, "Epsilon decay length (agent steps)."),
            ("epsilon_eval", float, "Evaluation epsilon."),
            ("noisy_sigma0", float, "Noisy-net sigma0."),
            ("priority_exponent", float, "Priority exponent alpha."),
            ("importance_exponent", float, "Importance-weight exponent beta."),
            ("num_atoms", int, "C51 atoms."),
            ("v_max", float, "C51 support bound (v_min = -v_max).")):
        (flags.DEFINE_float if _kind is float else flags.DEFINE_integer)(
            _name, None, _help, flag_values=flag_values)
    for _name, _help in (("double_q", "Double Q-learning."), ("dueling", "Dueling head."),
                         ("noisy", "Noisy nets."), ("prioritized", "Prioritized replay.")):
        flags.DEFINE_boolean(_name, None, _help, flag_values=flag_values)
    flags.DEFINE_enum("loss", None, ["mse", "huber"], "DQN loss.", flag_values=flag_values)

    # Schedule and run.
    flags.DEFINE_string("root_dir", None, "Run directory (checkpoints, logs, metrics).", flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "Random seed.", flag_values=flag_values)
    flags.DEFINE_integer("num_iterations", 200, "Iterations.", flag_values=flag_values)
    flags.DEFINE_integer("steps_per_iteration", 250_000, "Training agent steps per iteration.", flag_values=flag_values)
    flags.DEFINE_integer("eval_episodes", None,
                         "Games played with the eps_eval-greedy policy at each evaluation; "
                         "0 = none. Default: the protocol's reference runner: 100 for "
                         "der (its score is their mean), 0 for dopamine (the paper "
                         "reports training returns).", flag_values=flag_values)
    flags.DEFINE_enum("eval_schedule", None, list(config_lib.EVAL_SCHEDULES),
                      "Evaluate after every iteration (the reference's runners; the "
                      "default) or only after the final one.", flag_values=flag_values)
    flags.DEFINE_integer("eval_max_steps", None,
                         "Cap on the agent steps of one evaluation; 0 = no cap (each "
                         "game is capped at --max_episode_steps). Default: none for "
                         "der, 125000 for dopamine.", flag_values=flag_values)
    flags.DEFINE_integer("diagnostics_period", 2_500, "Updates between diagnostics.", flag_values=flag_values)
    flags.DEFINE_integer("summary_period", 500,
                         "Agent steps between the TensorBoard training scalars within "
                         "an iteration (loss, TD error, steps/s, episode returns); "
                         "0 = per iteration only. 500 = the reference's "
                         "summary_writing_frequency.", flag_values=flag_values)
    flags.DEFINE_float("progress_seconds", 30.0,
                       "Seconds between progress lines within an iteration (steps, "
                       "steps/s, updates, episodes, ETA); 0 = none by time.", flag_values=flag_values)
    flags.DEFINE_integer("progress_steps", 0,
                         "Agent steps between progress lines within an iteration, in "
                         "addition to --progress_seconds; 0 = none by steps.", flag_values=flag_values)
    flags.DEFINE_list("dormant_taus", ["0", "0.025"], "Dormant-neuron thresholds.", flag_values=flag_values)
    flags.DEFINE_integer("keep_checkpoints", 2, "Checkpoints kept.", flag_values=flag_values)
    flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                      "XLA for the train step: auto = on GPU/TPU; on CPU for the "
                      "Nature encoder without noisy layers and with a token block, "
                      "else off (measured per network, docs/performance.md).", flag_values=flag_values)
    flags.DEFINE_enum("policy_jit_compile", "auto", ["auto", "true", "false"],
                      "XLA for the acting policies (one observation per call): "
                      "auto = on GPU/TPU; on CPU for every network but the noisy "
                      "Nature-flatten ones (docs/performance.md).", flag_values=flag_values)
    flags.DEFINE_boolean("overlap_updates", False,
                         "Update on a background thread while the next agent steps "
                         "are collected, acting with the network as of the previous "
                         "update (faster; off = Dopamine's serial loop).", flag_values=flag_values)
    flags.DEFINE_boolean("allow_config_change", False,
                         "Resume a run directory even if its stored config differs.", flag_values=flag_values)


define_flags()

_AGENT_FLAGS = ("learning_rate", "adam_epsilon", "gamma", "n_step", "batch_size",
                "replay_capacity", "min_replay_history", "update_period",
                "target_update_period", "epsilon_end", "epsilon_decay_steps",
                "epsilon_eval", "noisy_sigma0", "priority_exponent",
                "importance_exponent", "num_atoms", "double_q", "dueling", "noisy",
                "prioritized", "loss")
_ENV_FLAGS = ("sticky_action_prob", "terminal_on_life_loss", "noop_max",
              "full_action_space", "max_episode_steps")


def experiment_config_from_flags(flag_values=FLAGS):
    """Turns the parsed flags of `flag_values` into an `ExperimentConfig`.

    Raises:
      ValueError: an invalid value or combination; the message names the
        flags (they carry the config fields' names).
    """
    fv = flag_values
    agent_overrides = {name: fv[name].value for name in _AGENT_FLAGS
                       if fv[name].value is not None}
    if fv.v_max is not None:
        agent_overrides.update(v_max=fv.v_max, v_min=-fv.v_max)
    agent = agents.AgentConfig.preset(fv.agent, **agent_overrides)
    network = networks.NetworkConfig(
        encoder=fv.encoder, nature_padding=fv.nature_padding,
        impala_width=fv.impala_width, penultimate=fv.penultimate,
        hidden_units=fv.hidden_units, scale=fv.scale, tokenizer=fv.tokenizer,
        patch_size=fv.patch_size, patch_embedding=fv.patch_embedding,
        patch_embedding_dim=fv.patch_embedding_dim, shuffle_seed=fv.shuffle_seed,
        num_experts=fv.num_experts, capacity_factor=fv.capacity_factor,
        num_slots=fv.num_slots, normalize=fv.normalize, top_k=fv.top_k,
        mixed_precision=fv.mixed_precision)
    protocol = fv.protocol or ("der" if fv.agent == "der" else "dopamine")
    evaluation = dict(config_lib.PROTOCOL_EVALUATION[protocol])
    for name in ("eval_episodes", "eval_schedule", "eval_max_steps"):
        if fv[name].value is not None:
            evaluation[name] = fv[name].value
    if evaluation["eval_max_steps"] == 0:
        evaluation["eval_max_steps"] = None
    schedule = config_lib.ScheduleConfig(
        num_iterations=fv.num_iterations, steps_per_iteration=fv.steps_per_iteration,
        diagnostics_period=fv.diagnostics_period, summary_period=fv.summary_period,
        progress_seconds=fv.progress_seconds, progress_steps=fv.progress_steps,
        **evaluation,
        dormant_taus=tuple(float(t) for t in fv.dormant_taus),
        keep_checkpoints=fv.keep_checkpoints, jit_compile=fv.jit_compile,
        policy_jit_compile=fv.policy_jit_compile, seed=fv.seed, overlap_updates=fv.overlap_updates)
    env_overrides = {name: fv[name].value for name in _ENV_FLAGS
                     if fv[name].value is not None}
    if fv.game == config_lib.CATCH_GAME and env_overrides:
        raise ValueError(f"--{' --'.join(env_overrides)} only apply to Atari games, "
                         "not --game=catch.")
    return config_lib.ExperimentConfig(
        game=fv.game, protocol=protocol, env_overrides=env_overrides, agent=agent,
        network=network, schedule=schedule)


def describe(config):
    """A short human description of a config for the log."""
    net = config.network
    block = net.penultimate
    if block in networks.MOE_PENULTIMATES:
        block += f"-{net.experts} ({net.tokenizer}, expert width {net.penultimate_width})"
    elif block != "flatten":
        block += f" ({net.tokenizer}, width {net.penultimate_width})"
    else:
        block += f" x{net.scale}"
    return (f"{config.agent.kind} on {config.game} ({config.protocol} protocol), "
            f"{net.encoder} encoder, {block}, seed {config.schedule.seed}")


__all__ = ["FLAGS", "define_flags", "describe", "experiment_config_from_flags"]
