"""A whole run: build everything from an `ExperimentConfig`, train for the
schedule, write TensorBoard summaries, metrics.csv and checkpoints, resume.

What a run writes under `root_dir` (the layout: `tf_softmoe.runs.RunDirectory`):

    config.json          the ExperimentConfig (resuming checks it); its
                         network section is the network as built
    tensorboard/         event files: train/, eval/, diagnostics, experts
                         per iteration; updates/, episodes/ and diagnostics
                         within it (summaries.py); a custom-scalars layout
                         and the HParams of the run
    metrics.csv          one row per finished iteration; eval_* columns
                         in the rows followed by an evaluation
    checkpoints/         atomic, rotating checkpoints (see checkpoints.py)
    policy/              the final greedy policy (TF-Agents PolicySaver)
    q_network.keras      the final Q-network as a Keras model
"""

import dataclasses
import os
import random
import signal
import time

from absl import logging
import numpy as np
import tensorflow as tf
from tf_agents.policies import policy_saver

from tf_softmoe import agents as agents_lib
from tf_softmoe import envs
from tf_softmoe import saving
from tf_softmoe.metrics import atari_scores
from tf_softmoe.runs import run_directory
from tf_softmoe.train import checkpoints as checkpoints_lib
from tf_softmoe.train import config as config_lib
from tf_softmoe.train import distribution as distribution_lib
from tf_softmoe.train import learner as learner_lib
from tf_softmoe.train import loop
from tf_softmoe.train import progress
from tf_softmoe.train import summaries

CONFIG_FILE = run_directory.CONFIG_FILE
METRICS_FILE = run_directory.METRICS_FILE
# The evaluation environment's seeds: run seed + this + iteration.
EVAL_SEED_OFFSET = 10_000
# Signals that make a run checkpoint and stop: a terminal's Ctrl-C, a
# sweep's or a scheduler's SIGTERM, and Slurm's warning before it preempts
# or time-limits a job (it signals every process of the job).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)


class ConfigMismatchError(ValueError):
    """The run directory holds a run with another configuration, or a
    config.json that is not readable as one (it cannot be resumed)."""


class UnusableRootDirError(ValueError):
    """The root directory cannot hold a run: it is a file, or not writable
    (the command's bad input, exit 1; `ConfigMismatchError` is a run there
    that cannot be resumed, exit 2)."""


def check_run_directory(root_dir, config, allow_config_change=False):
    """Checks, without writing anything, that `config` can run in `root_dir`.

    Returns:
      The checkpoint a resumed run starts from: the newest that is wholly
      readable (`checkpoints.read_checked`; a run falls back past newer
      unreadable ones, as `CheckpointManager.restore_latest`), or None when
      the directory has no checkpoint.

    Raises:
      UnusableRootDirError: `root_dir` is a file, or it (or, when it does not
        exist yet, its nearest existing parent) is not a writable directory.
      ConfigMismatchError: `root_dir` holds a config.json that is not a
        readable ExperimentConfig, or one that differs from `config` in a
        field that changes what is trained (unless `allow_config_change`).
      checkpoints.CheckpointError: `root_dir` holds checkpoints and none of
        them is readable (the message names each and its fault).
    """
    path = os.path.abspath(root_dir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UnusableRootDirError("it is a file, not a directory; give a directory "
                                "(new, or a run to resume).")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UnusableRootDirError(f"{existing} is a file, so the directory cannot be made.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UnusableRootDirError(f"{existing} is not writable.")
    run = run_directory.RunDirectory(path)
    if run.has_config():
        try:
            stored = run.read_config()
        except (OSError, run_directory.RunDirectoryError) as error:
            raise ConfigMismatchError(str(error)) from error
        differences = config_lib.config_differences(stored, config)
        if differences and not allow_config_change:
            listed = "; ".join(f"{k}: stored {a!r}, now {b!r}"
                               for k, (a, b) in differences.items())
            raise ConfigMismatchError(
                f"{root_dir} holds a run with another configuration ({listed}). "
                "Use a new --root_dir, or pass --allow_config_change to resume "
                "it with the new settings.")
    found = [checkpoint for _, checkpoint in run.checkpoints()]
    if not found:
        return None
    checkpoint, _, problems = checkpoints_lib.newest_readable(found)
    if checkpoint is None:
        raise checkpoints_lib.CheckpointError(
            f"{root_dir} cannot be resumed: none of its checkpoints is readable. "
            + " ".join(problems) + " Restore the checkpoints from a backup, or "
            "use a new --root_dir to start the run again.")
    for problem in problems:
        logging.warning("%s Resuming from the older %s.", problem, checkpoint)
    return checkpoint


def make_environment(config, seed):
    """The training environment of an `ExperimentConfig`."""
    if config.game == config_lib.CATCH_GAME:
        return envs.CatchEnv(seed=seed, **config.env_overrides)
    atari = envs.AtariConfig.preset(config.protocol, config.game, **config.env_overrides)
    return envs.make_atari_env(atari, seed=seed)


def eval_policy(agent, epsilon):
    """Greedy policy with ε-random actions (ε_eval = 0.001 in the paper)."""
    return agents_lib.EpsilonGreedyPolicy(agent.policy, epsilon=epsilon)


def _stats_to_json(stats):
    return {k: v for k, v in dataclasses.asdict(stats).items() if k != "diagnostics"}


def _stats_from_json(values):
    return loop.PhaseStats(**values)


class Experiment:
    """Builds and runs one training run.

    Re-running with the same `root_dir` resumes from the newest valid
    checkpoint: replay, networks, optimiser and counters are restored, the
    interrupted iteration continues where its checkpoint left it. A config
    that differs from the stored one raises `ConfigMismatchError` (naming the
    fields) unless `allow_config_change`. Schedule fields that do not change
    what is trained (e.g. num_iterations) may always change.

    While an iteration runs, a progress line is printed every
    `schedule.progress_seconds` (and/or `progress_steps` agent steps) and the
    training scalars go to TensorBoard every `schedule.summary_period`
    agent steps (`progress.IterationMonitor`); the per-iteration line and
    metrics.csv row come at the end of each iteration.

    Args:
      config: an `ExperimentConfig`.
      root_dir: the run directory.
      allow_config_change: resume even if the stored config differs.
      handle_signals: on SIGTERM, SIGINT or SIGUSR2 finish the current
        step, write a checkpoint, then return (main thread only). SIGUSR2 is
        what Slurm sends before preempting or time-limiting a job
        (`sbatch --signal=USR2@<seconds>`).
      export_on_exit: write the final policy and the .keras Q-network.

    Raises:
      UnusableRootDirError, ConfigMismatchError: as `check_run_directory`.
      checkpoints.CheckpointError: no checkpoint of the run is readable, or
        the one it would resume from does not fit the agent this config
        builds. Every check runs before anything in `root_dir` is written,
        so a refused run directory is left byte for byte as it was.
    """

    def __init__(self, config, root_dir, allow_config_change=False,
                 handle_signals=True, export_on_exit=True):
        self.config = config
        self.root_dir = root_dir
        self.run_directory = run_directory.RunDirectory(root_dir)
        self.handle_signals = handle_signals
        self.export_on_exit = export_on_exit
        self._stop_signal = None
        # Nothing in the run directory is written before the checks below
        # (the strategy, and the checkpoint's fit to the built agent) pass.
        resume_from = check_run_directory(root_dir, config, allow_config_change)
        schedule = config.schedule
        # Before anything is written: a strategy that cannot run here (no
        # TPU, a batch that does not split) leaves the directory as it was.
        self.strategy = distribution_lib.resolve_strategy(
            schedule.distribution, tpu_address=schedule.tpu_address)
        distribution_lib.check_batch_split(config.agent.batch_size, self.strategy)
        seed = schedule.seed
        # Python's, NumPy's and TF's streams, and tf-keras' own seed generator:
        # once anything in the process has called set_random_seed, unseeded
        # initializers draw their seeds from that generator, not from `random`.
        tf.keras.utils.set_random_seed(seed)
        self.env = make_environment(config, seed)
        # Made at the first evaluation (DER plays in 100) and closed when
        # `run` returns.
        self.eval_envs = []
        # Networks, target network, counters and optimizer state in the
        # strategy's scope (the default strategy's for "none").
        with self.strategy.scope():
            self.agent = agents_lib.make_agent(
                config.agent, config.network, self.env.time_step_spec(),
                self.env.action_spec())
        self.replay = loop.make_replay(config.agent, self.env.observation_spec().shape,
                                       seed=seed)
        self.learner = learner_lib.Learner(self.agent, jit_compile=schedule.jit_compile,
                                           strategy=self.strategy, seed=seed)
        self.trainer = loop.Trainer(
            self.env, self.agent, self.replay, self.learner, config.agent,
            diagnostics_period=schedule.diagnostics_period,
            dormant_taus=schedule.dormant_taus, seed=seed,
            overlap_updates=schedule.overlap_updates,
            policy_jit_compile=schedule.policy_jit_compile)
        # Traced once per batch size, played after every iteration.
        self._eval_policy = (loop.CompiledPolicy(
            eval_policy(self.agent, config.agent.epsilon_eval),
            jit_compile=self.trainer.policy_jit_compile)
                             if schedule.eval_episodes else None)
        logging.info("Train step: %s (jit_compile=%s, distribution=%s, %d "
                     "replicas); policy: %s (policy_jit_compile=%s); %s loop.",
                     "XLA" if self.learner.jit_compile else "graph",
                     schedule.jit_compile, schedule.distribution,
                     self.strategy.num_replicas_in_sync,
                     "XLA" if self.trainer.policy_jit_compile else "graph",
                     schedule.policy_jit_compile,
                     "overlapped" if schedule.overlap_updates else "serial")
        self._tf_checkpoint = tf.train.Checkpoint(
            agent=self.agent, agent_step=self.agent.agent_step,
            train_step=self.agent.train_step_counter)
        if resume_from is not None:
            self._check_fits(resume_from)
        self.run_directory.write_config(config)
        self.checkpoints = checkpoints_lib.CheckpointManager(
            self.run_directory.checkpoints_dir, keep=schedule.keep_checkpoints)
        self.summaries = summaries.SummaryWriter(
            self.run_directory.tensorboard_dir, config)
        self.monitor = progress.IterationMonitor(
            config.game, schedule.num_iterations, schedule.steps_per_iteration,
            summary_period=schedule.summary_period,
            progress_seconds=schedule.progress_seconds,
            progress_steps=schedule.progress_steps, writer=self.summaries,
            record=self.run_directory.write_progress,
            updates=lambda: int(self.agent.train_step_counter.numpy()))
        self.iteration = 0
        self.partial = None

    # ------------------------------------------------------------ checkpoints
    def _write_checkpoint(self, tmp_dir):
        self._tf_checkpoint.write(os.path.join(tmp_dir, "tf", "ckpt"))
        self.replay.save(os.path.join(tmp_dir, "replay"))

    def _check_fits(self, path):
        """Raises `CheckpointError` when checkpoint `path` does not fit the
        agent this config builds (e.g. a network changed with
        allow_config_change). Loads its TF part into the agent, which
        `restore` then loads again with the rest."""
        try:
            # expect_partial: this read only checks the fit (`restore` reads
            # the checkpoint again), so values it leaves pending, such as the
            # slots of an optimizer that makes them at its first update, are
            # no cause for TensorFlow's warnings.
            self._tf_checkpoint.read(os.path.join(path, "tf", "ckpt")).expect_partial(
            ).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            first_line = (str(error).strip().splitlines() or [""])[0]
            raise checkpoints_lib.CheckpointError(
                f"{self.root_dir} cannot be resumed with this configuration: its "
                f"checkpoint {path} does not fit the agent it builds ({first_line}). "
                "Use the run's own settings (its config.json), or a new --root_dir."
            ) from error

    def _restore_checkpoint(self, path, state):
        self._tf_checkpoint.read(os.path.join(path, "tf", "ckpt")).assert_existing_objects_matched()
        self.replay.restore(os.path.join(path, "replay"))
        random.setstate(_tuple_state(state["python_random"]))
        np.random.set_state(_numpy_state(state["numpy_random"]))
        # TF's op-level random state cannot be snapshotted; reseed it from the
        # run seed and the restored step so a resumed run is reproducible.
        tf.random.set_seed(self.config.schedule.seed * 1_000_003
                           + int(state["agent_step"]))
        # The same for the seeds of the policies' draws (ε, noise); the
        # learner's follow the restored update count.
        entropy = [self.config.schedule.seed, int(state["agent_step"])]
        self.trainer.policy.reseed(entropy + [0])
        if self._eval_policy is not None:
            self._eval_policy.reseed(entropy + [1])

    def save_checkpoint(self):
        """Writes a checkpoint of the run as it stands now."""
        state = {
            "iteration": self.iteration,
            "partial": _stats_to_json(self.partial) if self.partial else None,
            "agent_step": int(self.agent.agent_step.numpy()),
            "train_step": int(self.agent.train_step_counter.numpy()),
            "python_random": random.getstate(),
            "numpy_random": _jsonable_numpy_state(np.random.get_state()),
            "replay_size": len(self.replay),
        }
        path = self.checkpoints.save(state["agent_step"], self._write_checkpoint, state)
        logging.info("Checkpoint written: %s", path)
        return path

    def restore(self):
        """Restores the newest valid checkpoint; returns its path or None."""
        path, state = self.checkpoints.restore_latest(self._restore_checkpoint)
        if path is None:
            return None
        self.iteration = int(state["iteration"])
        self.partial = _stats_from_json(state["partial"]) if state["partial"] else None
        self.trainer.forget_episode()
        self.run_directory.truncate_metrics(self.iteration)
        logging.info("Resumed from %s: iteration %d, %d agent steps, %d updates, "
                     "replay %d.", path, self.iteration, state["agent_step"],
                     state["train_step"], state["replay_size"])
        return path

    # -------------------------------------------------------------------- run
    def _on_signal(self, signum, _frame):
        logging.warning("Signal %d: finishing the current step, then checkpointing.",
                        signum)
        self._stop_signal = signum

    def _install_signal_handlers(self):
        if not self.handle_signals:
            return {}
        previous = {}
        for signum in STOP_SIGNALS:
            try:
                previous[signum] = signal.signal(signum, self._on_signal)
            except ValueError:  # not the main thread
                return previous
        return previous

    @property
    def stopped_by_signal(self):
        return self._stop_signal

    def run(self):
        """Trains for the schedule (resuming first); returns the last row of
        metrics, or None if nothing ran."""
        self.restore()
        schedule = self.config.schedule
        previous_handlers = self._install_signal_handlers()
        row = None
        try:
            self.summaries.write_hparams()
            while self.iteration < schedule.num_iterations:
                stats = self.partial or loop.PhaseStats()
                remaining = schedule.steps_per_iteration - stats.agent_steps
                self.partial = stats
                self.monitor.begin(self.iteration, self.trainer.agent_step, stats)
                self.trainer.run(remaining, stats=stats,
                                 should_stop=lambda: self._stop_signal is not None,
                                 monitor=self.monitor)
                if self._stop_signal is not None:
                    self.save_checkpoint()
                    return row
                evaluation = None
                if schedule.evaluates_after(self.iteration):
                    if remaining > 0:
                        # The iteration's training is kept even if the
                        # evaluation (100 games for DER) is cut short: a
                        # resumed run then plays only the evaluation.
                        self.save_checkpoint()
                    evaluation = self._evaluate()
                    if evaluation is None:  # stopped: resumes at this evaluation
                        return row
                row = self._finish_iteration(stats, evaluation)
                self.iteration += 1
                self.partial = None
                self.save_checkpoint()
        finally:
            self.trainer.close()
            for env in self.eval_envs:
                env.close()
            self.eval_envs = []
            self.summaries.flush()
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
        if self.export_on_exit:
            self.export()
        return row

    def _evaluate(self):
        """Plays the evaluation games after the current iteration; returns
        (returns, lengths), or None when a signal cut it short."""
        schedule = self.config.schedule
        count = min(schedule.eval_envs, schedule.eval_episodes)
        if len(self.eval_envs) != count:
            self.eval_envs = [make_environment(self.config, None) for _ in range(count)]
        # Seeded per iteration: the evaluation after iteration i plays the
        # same games whether or not the run was resumed before it.
        seeds = loop.environment_seeds(
            schedule.seed + EVAL_SEED_OFFSET + self.iteration, count)
        for env, seed in zip(self.eval_envs, seeds):
            env.seed(seed)
        self.monitor.begin_evaluation(self.iteration, self.trainer.agent_step,
                                      schedule.eval_episodes, envs=count)
        returns, lengths = loop.evaluate(
            self.eval_envs, self._eval_policy, schedule.eval_episodes,
            max_steps=schedule.eval_max_steps,
            should_stop=lambda: self._stop_signal is not None,
            on_progress=self.monitor.evaluation_progress)
        if self._stop_signal is not None:
            logging.warning("Evaluation after iteration %d stopped after %d of %d "
                            "games; it is played again in full on resume.",
                            self.iteration, len(returns), schedule.eval_episodes)
            return None
        return returns, lengths

    def _finish_iteration(self, stats, evaluation=None):
        schedule = self.config.schedule
        if self.replay.can_sample(self.config.agent.batch_size) and (
                self.agent.agent_step.numpy() >= self.config.agent.min_replay_history):
            stats.diagnostics = self.learner.diagnostics(
                self.replay.sample(self.config.agent.batch_size), schedule.dormant_taus)
        summary = stats.summary()
        row = {"iteration": self.iteration,
               "agent_steps": int(self.agent.agent_step.numpy()),
               "updates": int(self.agent.train_step_counter.numpy())}
        row.update({f"train_{k}": v for k, v in summary.items()
                    if k not in ("agent_steps", "updates")})
        row["train_human_normalized_score"] = self._human_normalized(
            summary["episode_return"])
        row["replay_size"] = len(self.replay)
        row.update(summaries.flatten_diagnostics(stats.diagnostics))
        if evaluation is not None:
            returns, lengths = evaluation
            mean_return = float(np.mean(returns)) if returns else float("nan")
            row["eval_episode_return"] = mean_return
            row["eval_episode_length"] = float(np.mean(lengths)) if lengths else float("nan")
            row["eval_episodes"] = len(returns)
            row["eval_human_normalized_score"] = self._human_normalized(mean_return)
        row["wall_time"] = time.time()
        self.run_directory.append_metrics(row)
        self.summaries.write_iteration(row, step=row["agent_steps"])
        self._log_progress(row, stats)
        return row

    def _human_normalized(self, score):
        """metrics.csv's human-normalised score: NaN for a game without a
        human reference score (AirRaid, catch; see
        `atari_scores.human_normalized_score`)."""
        if not atari_scores.has_human_score(self.config.game):
            return float("nan")
        return atari_scores.human_normalized_score(self.config.game, score)

    def _log_progress(self, row, stats):
        schedule = self.config.schedule
        done = self.iteration + 1
        rate = stats.steps_per_second
        left = (schedule.num_iterations - done) * schedule.steps_per_iteration
        eta = left / rate if rate > 0 else float("nan")
        message = (
            f"[{self.config.game}] iteration {done}/{schedule.num_iterations} | "
            f"{row['agent_steps']} agent steps | {rate:.0f} steps/s | "
            f"return {row['train_episode_return']:.2f} "
            f"({row['train_episodes']} episodes) | loss {row['train_loss']:.4g} | "
            + (f"eval return {row['eval_episode_return']:.2f} "
               f"({row['eval_episodes']} games) | " if "eval_episode_return" in row else "")
            + f"ETA {progress.format_seconds(eta)}")
        logging.info(message)
        print(message, flush=True)

    # ----------------------------------------------------------------- export
    def export(self):
        """Writes the greedy policy (PolicySaver) and the Q-network (.keras)."""
        saver = policy_saver.PolicySaver(self.agent.policy, batch_size=None,
                                         train_step=self.agent.train_step_counter)
        saver.save(self.run_directory.policy_dir)
        saving.save_q_network(self.agent.q_network,
                              self.run_directory.q_network_path)


def _jsonable_numpy_state(state):
    name, keys, pos, has_gauss, cached = state
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _numpy_state(values):
    name, keys, pos, has_gauss, cached = values
    return (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)


def _tuple_state(values):
    version, internal, gauss = values
    return (version, tuple(internal), gauss)


def read_stored_config(root_dir):
    """The `ExperimentConfig` stored in a run directory.

    Raises:
      FileNotFoundError: it has no config.json.
      run_directory.RunDirectoryError: config.json is corrupt or foreign.
    """
    return run_directory.RunDirectory(root_dir).read_config()


def load_agent(root_dir, checkpoint=None):
    """Rebuilds a run's agent and restores its networks (no replay).

    Args:
      root_dir: run directory.
      checkpoint: a checkpoint directory; the newest readable one if None.

    Returns:
      (config, agent, checkpoint_path).
    """
    config = read_stored_config(root_dir)
    env = make_environment(config, config.schedule.seed)
    agent = agents_lib.make_agent(config.agent, config.network, env.time_step_spec(),
                                  env.action_spec())
    tf_checkpoint = tf.train.Checkpoint(agent=agent)
    manager = checkpoints_lib.CheckpointManager(
        run_directory.RunDirectory(root_dir).checkpoints_dir)
    candidates = [checkpoint] if checkpoint else manager.checkpoints()
    for path in candidates:
        try:
            tf_checkpoint.read(os.path.join(path, "tf", "ckpt")).expect_partial()
            return config, agent, path
        except (tf.errors.OpError, ValueError) as error:
            logging.warning("Checkpoint %s is unreadable (%s); trying the previous one.",
                            path, error)
    raise checkpoints_lib.CheckpointError(
        f"No readable checkpoint in {root_dir}/checkpoints (tried {candidates}).")


__all__ = ["ConfigMismatchError", "Experiment", "UnusableRootDirError", "check_run_directory",
           "load_agent", "make_environment", "read_stored_config", "eval_policy"]
