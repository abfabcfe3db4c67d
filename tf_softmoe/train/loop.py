"""Collection and learning: the agent-step loop shared by training and tests.

One agent step: the collect policy acts in the environment, the newest frame
and the (clipped) reward go into the frame-once replay buffer, and every
`update_period` steps past `min_replay_history` the learner makes one
compiled update on a sampled batch (then priorities are updated when the
replay is prioritized). Episode returns are the RAW game scores.
"""

import concurrent.futures
import dataclasses
import time
from typing import List

import numpy as np
import tensorflow as tf
from tf_agents.trajectories import time_step as ts

from tf_softmoe import replay as replay_lib
from tf_softmoe.layers import noisy_dense
from tf_softmoe.train import flat_call
from tf_softmoe.train import learner as learner_lib


def make_replay(agent_config, frame_shape, seed=None):
    """The replay buffer an `AgentConfig` asks for."""
    return replay_lib.FrameReplayBuffer(
        capacity=agent_config.replay_capacity, frame_shape=frame_shape[:2],
        stack_size=frame_shape[2], n_step=agent_config.n_step, gamma=agent_config.gamma,
        prioritized=agent_config.prioritized, priority_exponent=1.0,
        importance_exponent=agent_config.importance_exponent, seed=seed)


class CompiledPolicy:
    """A TF-Agents policy's `action` as one graph call per agent step.

    The policy is traced once per batch size into a concrete function that
    each call runs on the four flat tensors directly: calling the
    `tf.function` instead re-binds the arguments to its signature and
    checks their types every time, which is costly on the batch-of-one path
    (measured in docs/performance.md, "Library changes made from these
    measurements", item 8). The fields are cast to the spec's dtypes and
    their shapes checked here instead.

    `action` acts for one time step (the collect path); `actions` for a
    batch, as a parallel evaluation does (`evaluate` with several
    environments).

    Each call also takes a `[2]` seed, the next of a NumPy generator, and
    runs the policy within `noisy_dense.seeded_draws(seed)`: the ε-greedy
    coins and random actions (`agents.EpsilonGreedyPolicy`) and the noisy
    layers' noise are drawn from it. Under XLA, TensorFlow's stateful random
    ops ignore every seed, so without this every run would act on the same
    random numbers whatever its seed.

    Args:
      policy: a TF-Agents policy.
      seed: seeds the generator of the calls' seeds, and is passed to
        `tf.random.set_seed` for the stateful ops a policy of one's own may
        have; None: the generator is seeded from NumPy's global stream,
        which a run seeds.
      jit_compile: compile the call with XLA (see
        `learner.resolve_policy_jit_compile` for when that is faster).
    """

    # Seeds drawn from the generator at a time: one NumPy call per block
    # instead of one per agent step.
    _SEED_BLOCK = 1024

    def __init__(self, policy, seed=None, jit_compile=False):
        if seed is not None:
            tf.random.set_seed(seed)
        self.reseed(seed)
        spec = policy.time_step_spec
        fields = (spec.step_type, spec.reward, spec.discount, spec.observation)
        self._dtypes = tuple(s.dtype.as_numpy_dtype for s in fields)
        self._shapes = tuple(tuple(s.shape) for s in fields)

        def action(step_type, reward, discount, observation, seed):
            step = ts.TimeStep(step_type, reward, discount, observation)
            with noisy_dense.seeded_draws(seed):
                return policy.action(step).action

        self.jit_compile = bool(jit_compile)
        self._function = tf.function(action, autograph=False, jit_compile=self.jit_compile)
        self._callers = {}
        self._call = self._caller(1)

    def _caller(self, batch_size):
        """The flat call of the function traced for `batch_size` rows."""
        caller = self._callers.get(batch_size)
        if caller is None:
            concrete = self._function.get_concrete_function(
                *[tf.TensorSpec((batch_size,) + shape, dtype)
                  for shape, dtype in zip(self._shapes, self._dtypes)],
                tf.TensorSpec([2], tf.int32))
            caller = self._callers[batch_size] = flat_call.flat_caller(concrete)
        return caller

    def reseed(self, seed=None):
        """Restarts the calls' seeds from `seed` (None: from NumPy's global
        stream), e.g. after a run is restored from a checkpoint."""
        if seed is None:
            seed = np.random.randint(2**31 - 1)
        self._seed_generator = np.random.default_rng(seed)
        self._seed_block = []

    def _next_seed(self):
        if not self._seed_block:
            self._seed_block = list(self._seed_generator.integers(
                0, 2**31 - 1, size=(self._SEED_BLOCK, 2), dtype=np.int32)[::-1])
        return tf.constant(self._seed_block.pop())

    def action(self, time_step):
        """The action (an int) for one unbatched `TimeStep` of NumPy values.

        Raises:
          ValueError: a field's shape differs from the policy's spec.
        """
        tensors = [tf.constant(flat_call.checked_array(
            value, dtype, shape, f"time_step.{name}",
            f"the policy expects {shape} (one unbatched time step)")[None])
                   for name, value, dtype, shape in zip(
                       ts.TimeStep._fields, time_step, self._dtypes, self._shapes)]
        tensors.append(self._next_seed())
        return int(self._call(tensors).numpy()[0])

    def actions(self, time_steps, max_batch_size=None):
        """The actions (int64 [B]) for a `TimeStep` of NumPy values with a
        leading batch dimension B.

        The batch is padded (with copies of its first row, whose actions are
        dropped) to a size from `batch_sizes(max_batch_size)`, so that an
        evaluation whose environments finish one by one traces a handful of
        sizes instead of one per live count.

        Args:
          time_steps: the batch.
          max_batch_size: the largest B the caller will pass (default B).

        Raises:
          ValueError: a field's shape differs from the policy's spec with a
            batch dimension, or B exceeds `max_batch_size`.
        """
        rows = len(np.asarray(time_steps.step_type).reshape(-1))
        limit = rows if max_batch_size is None else int(max_batch_size)
        if rows < 1 or rows > limit:
            raise ValueError(f"a batch of {rows} time steps; expected 1 to {limit}.")
        size = next(n for n in batch_sizes(limit) if n >= rows)
        tensors = []
        for name, value, dtype, shape in zip(ts.TimeStep._fields, time_steps,
                                             self._dtypes, self._shapes):
            value = flat_call.checked_array(
                value, dtype, (rows,) + shape, f"time_steps.{name}",
                f"the policy expects [{rows}] + {list(shape)} (a batch of {rows})")
            if size > rows:
                value = np.concatenate([value, np.repeat(value[:1], size - rows, axis=0)])
            tensors.append(tf.constant(value))
        tensors.append(self._next_seed())
        return self._caller(size)(tensors).numpy()[:rows]


def batch_sizes(max_batch_size):
    """The batch sizes `CompiledPolicy.actions` traces for batches of up to
    `max_batch_size` rows: the powers of two below it, and itself."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return sizes + [int(max_batch_size)]


def environment_seeds(seed, count):
    """Seeds of `count` environments that play one evaluation together.

    The first is `seed` itself, so one environment plays the games it always
    played; the others come from `np.random.SeedSequence((seed, count))`.
    """
    if count == 1:
        return [int(seed)]
    words = np.random.SeedSequence((int(seed), int(count))).generate_state(
        count - 1, dtype=np.uint32)
    return [int(seed)] + [int(word) for word in words]


@dataclasses.dataclass
class PhaseStats:
    """What one call of `Trainer.run` did."""

    agent_steps: int = 0
    updates: int = 0
    episode_returns: List[float] = dataclasses.field(default_factory=list)
    episode_lengths: List[int] = dataclasses.field(default_factory=list)
    episode_end_steps: List[int] = dataclasses.field(default_factory=list)
    losses: List[float] = dataclasses.field(default_factory=list)
    td_error_means: List[float] = dataclasses.field(default_factory=list)
    td_error_vars: List[float] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    train_seconds: float = 0.0
    diagnostics: dict = dataclasses.field(default_factory=dict)

    @property
    def steps_per_second(self):
        return self.agent_steps / self.seconds if self.seconds > 0 else 0.0

    def summary(self):
        """Scalars of the phase (NaN where nothing happened)."""
        def mean(values):
            return float(np.mean(values)) if values else float("nan")
        return {
            "episode_return": mean(self.episode_returns),
            "episode_length": mean(self.episode_lengths),
            "episodes": len(self.episode_returns),
            "loss": mean(self.losses),
            "td_error_mean": mean(self.td_error_means),
            "td_error_var": mean(self.td_error_vars),
            "agent_steps": self.agent_steps,
            "updates": self.updates,
            "steps_per_second": self.steps_per_second,
        }


def paired_variables(copy, network):
    """(copy's variable, network's variable) pairs matched by name below each
    network's own scope; raises if the two do not hold the same variables."""
    def by_name(net):
        prefix = net.name + "/"
        return {v.name[len(prefix):] if v.name.startswith(prefix) else v.name: v
                for v in net.variables}
    targets, sources = by_name(copy), by_name(network)
    if set(targets) != set(sources) or any(
            targets[k].shape != sources[k].shape for k in targets):
        raise ValueError(
            f"{copy.name} and {network.name} do not hold the same variables: "
            f"{sorted(set(targets) ^ set(sources))}")
    return [(targets[k], sources[k]) for k in sorted(targets)]


class Trainer:
    """Runs agent steps: collect into replay, learn on schedule.

    Args:
      env: a TF-Agents PyEnvironment with stacked uint8 frames `[H, W, S]`
        whose `get_info()` reports `episode_ended` / `episode_raw_return` /
        `episode_length` (tf_softmoe's Atari and Catch environments); other
        environments are accepted and their returns summed here.
      agent: a `DqnAgent` / `RainbowAgent` (its `agent_step` is advanced).
      replay: a `FrameReplayBuffer`.
      learner: a `Learner` for the agent.
      agent_config: the `AgentConfig`.
      diagnostics_period: updates between diagnostics (0: never).
      dormant_taus: thresholds of the dormant-neuron fractions.
      policy_jit_compile: compile the collect policy with XLA: True, False
        or "auto" (`resolve_policy_jit_compile`: on a CPU, XLA for all but
        the noisy Nature-flatten networks).
      overlap_updates: run each update on a background thread while the
        next `update_period` agent steps are collected. Off (the default),
        the loop is Dopamine's: act, step, store, and every `update_period`
        steps sample and update before the next action. On, the actions
        between two updates come from an acting copy of the online network
        synced when the previous update finished, i.e. one update older
        than the serial loop's, and acting no longer waits for learning
        (the loop is learner-bound; docs/performance.md). As in the serial
        loop each update samples after the previous one's priorities are
        applied and the update count per step is the same; the transitions
        differ because the actions do, and op-level random draws of the two
        threads may interleave differently from run to run.
    """

    def __init__(self, env, agent, replay, learner, agent_config,
                 diagnostics_period=0, dormant_taus=(0.0, 0.025), seed=None,
                 overlap_updates=False, policy_jit_compile="auto"):
        self.env = env
        self.agent = agent
        self.replay = replay
        self.learner = learner
        self.config = agent_config
        self.diagnostics_period = diagnostics_period
        self.dormant_taus = tuple(dormant_taus)
        self.overlap_updates = bool(overlap_updates)
        self._pending = None  # (future, batch, start) of a background update
        self._executor = None
        online = agent.q_network
        self.policy_jit_compile = learner_lib.resolve_policy_jit_compile(
            policy_jit_compile, getattr(online, "config", None))
        if self.overlap_updates:
            self._acting_network = online.copy(name="ActingQNetwork")
            self._acting_network.create_variables()
            pairs = paired_variables(self._acting_network, online)
            # One graph call per sync rather than an eager assign per
            # variable: the sync sits between two updates.
            def sync():
                for target, source in pairs:
                    target.assign(source)

            self._sync_acting_network = tf.function(sync, autograph=False)
            self._sync_acting_network()
            self.policy = CompiledPolicy(
                agent.collect_policy_for(self._acting_network), seed=seed,
                jit_compile=self.policy_jit_compile)
        else:
            self._acting_network = None
            self.policy = CompiledPolicy(agent.collect_policy, seed=seed,
                                         jit_compile=self.policy_jit_compile)
        self._time_step = None
        self._episode_return = 0.0
        self._episode_length = 0
        self._monitor = None

    @property
    def agent_step(self):
        return int(self.agent.agent_step.numpy())

    def _clip(self, reward):
        clip = self.config.reward_clip
        return float(np.clip(reward, -clip, clip)) if clip is not None else float(reward)

    def _episode_info(self, next_step):
        info = self.env.get_info() if hasattr(self.env, "get_info") else None
        if info is not None:
            return info["episode_ended"], info["episode_raw_return"], info["episode_length"]
        self._episode_return += float(next_step.reward)
        self._episode_length += 1
        ended = bool(next_step.is_last())
        result = (ended, self._episode_return, self._episode_length)
        if ended:
            self._episode_return, self._episode_length = 0.0, 0
        return result

    def learn(self, stats):
        """One update on a sampled batch; priorities updated when prioritized.
        With `overlap_updates` the update is started on the background thread
        (after the previous one is finished and recorded) and returns at once."""
        if self.overlap_updates:
            self.finish_update(stats)
            batch = self.replay.sample(self.config.batch_size)
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="tf_softmoe_update")
            self._pending = (self._executor.submit(self.learner.train, batch), batch,
                             time.perf_counter())
            return
        batch = self.replay.sample(self.config.batch_size)
        start = time.perf_counter()
        out = self.learner.train(batch)
        stats.train_seconds += time.perf_counter() - start
        self._record_update(stats, batch, out)

    def finish_update(self, stats):
        """Waits for a background update, records it (priorities, losses,
        diagnostics) and syncs the acting network; nothing when none runs."""
        if self._pending is None:
            return
        future, batch, start = self._pending
        self._pending = None
        out = future.result()
        stats.train_seconds += time.perf_counter() - start
        self._sync_acting_network()
        self._record_update(stats, batch, out)

    def close(self, stats=None):
        """Finishes (and records into `stats`, if given) a background update
        and stops its thread; a later update starts a new one."""
        self.finish_update(stats if stats is not None else PhaseStats())
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _record_update(self, stats, batch, out):
        if self.replay.prioritized:
            priorities = (out["per_sample_loss"].astype(np.float64) + 1e-10) ** (
                self.config.priority_exponent)
            self.replay.update_priorities(batch["indices"], priorities)
        stats.updates += 1
        stats.losses.append(float(out["loss"]))
        stats.td_error_means.append(float(out["td_error_mean"]))
        stats.td_error_vars.append(float(out["td_error_var"]))
        if self.diagnostics_period and stats.updates % self.diagnostics_period == 0:
            stats.diagnostics = self.learner.diagnostics(batch, self.dormant_taus)
            if self._monitor is not None:
                self._monitor.diagnostics(stats.diagnostics, self.agent_step)

    def forget_episode(self):
        """Drops the episode in progress (after a restore: the environment
        restarts, so the replay's open episode is closed as truncated)."""
        self._time_step = None
        self._episode_return, self._episode_length = 0.0, 0
        self.replay.truncate_open_episode()

    def run(self, num_steps, stats=None, should_stop=None, monitor=None):
        """Runs up to `num_steps` agent steps.

        Args:
          num_steps: agent steps to run.
          stats: a `PhaseStats` to continue (e.g. a resumed iteration).
          should_stop: optional callable checked after every agent step; when
            it returns True the phase ends early (e.g. on SIGTERM).
          monitor: optional `progress.IterationMonitor` (`begin` already
            called): after each agent step (and its update) the step and the
            clock are compared with the monitor's next due point, and only
            when one is reached is `monitor.update` called; diagnostics
            taken during the phase are passed to it too.

        Returns:
          The `PhaseStats`.
        """
        stats = stats if stats is not None else PhaseStats()
        start = time.perf_counter()
        action_dtype = self.env.action_spec().dtype
        if self.overlap_updates:
            # The online network may have been restored from a checkpoint
            # since the last phase.
            self._sync_acting_network()
        self._monitor = monitor
        try:
            self._run_steps(num_steps, stats, should_stop, action_dtype)
            # A phase ends with every update done and recorded (checkpoints,
            # evaluation and summaries see the state the serial loop would).
            self.finish_update(stats)
        finally:
            self._monitor = None
        stats.seconds += time.perf_counter() - start
        return stats

    def _run_steps(self, num_steps, stats, should_stop, action_dtype):
        cfg = self.config
        monitor = self._monitor
        clock = monitor.clock if monitor is not None else None
        for _ in range(num_steps):
            if should_stop is not None and should_stop():
                break
            if self._time_step is None or self._time_step.is_last():
                self._time_step = self.env.reset()
            current = self._time_step
            action = self.policy.action(current)
            next_step = self.env.step(np.asarray(action, dtype=action_dtype))
            last = bool(next_step.step_type == ts.StepType.LAST)
            terminal = last and float(next_step.discount) == 0.0
            truncated = last and not terminal
            self.replay.add(
                current.observation[..., -1], action, self._clip(next_step.reward),
                terminal, truncated=truncated,
                next_frame=next_step.observation[..., -1] if truncated else None)
            # The ε schedule reads the variable; its new value comes back
            # from the same op (no second read per step).
            step = int(self.agent.agent_step.assign_add(1).numpy())
            stats.agent_steps += 1
            ended, episode_return, episode_length = self._episode_info(next_step)
            if ended:
                stats.episode_returns.append(float(episode_return))
                stats.episode_lengths.append(int(episode_length))
                stats.episode_end_steps.append(step)
            self._time_step = next_step
            if step >= cfg.min_replay_history and step % cfg.update_period == 0:
                self.learn(stats)
            if monitor is not None and (step >= monitor.next_step
                                        or clock() >= monitor.next_time):
                monitor.update(step, stats)


def _game_info(env):
    """The env's `get_info()` (the full game's return and length across
    lost lives, AtariPyEnvironment), or None where it has none: no such
    method, or TF-Agents' `PyEnvironment` default, which raises
    NotImplementedError. An error inside a real `get_info` propagates."""
    get_info = getattr(env, "get_info", None)
    if get_info is None:
        return None
    try:
        return get_info()
    except NotImplementedError:
        return None


def evaluate(env, policy, num_episodes, max_steps=None, on_step=None,
             jit_compile=False, should_stop=None, on_episode=None, on_progress=None):
    """Plays `num_episodes` full episodes (games) and returns their RAW
    returns and lengths (lists, in the order the games ended).

    With several environments the games are played in all of them at once,
    one batched policy call per agent step for the environments still
    playing. The games are split evenly between the environments before the
    first step (the first `num_episodes % len(env)` play one more) and each
    plays its share to the end, so the games counted do not depend on their
    lengths: stopping at the first `num_episodes` games to end would favour
    short ones. With as many environments as games this is the reference's
    parallel evaluation (DataEfficientAtariRunner, `eval_one_to_one`).

    Args:
      env: a PyEnvironment (see `Trainer`), or a list of them (seeded
        differently, e.g. with `environment_seeds`).
      policy: a TF-Agents policy, a `CompiledPolicy`, an object with a
        batched `actions(time_steps, max_batch_size)`, or any callable
        `time_step -> action` (called once per environment and step).
      num_episodes: episodes to finish.
      max_steps: optional cap on agent steps in total; games unfinished at
        the cap are not returned.
      on_step: optional callable `on_step(env, time_step)` after each step
        of any environment (e.g. to record video frames).
      jit_compile: compile a TF-Agents policy with XLA (see
        `learner.resolve_policy_jit_compile`).
      should_stop: optional callable checked before every agent step of the
        environments; when it returns True the games finished so far are
        returned.
      on_episode: optional callable `on_episode(returns, lengths, steps)`
        after each game ends, with the returns and lengths so far and the
        agent steps played.
      on_progress: optional callable, the same arguments, after each agent
        step of all the environments still playing (e.g. a progress line by
        time: with 100 environments the first game ends late).

    Raises:
      ValueError: no environment, or `num_episodes` < 1.
    """
    envs = list(env) if isinstance(env, (list, tuple)) else [env]
    if not envs:
        raise ValueError("evaluate needs at least one environment.")
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}.")
    if hasattr(policy, "time_step_spec"):
        policy = CompiledPolicy(policy, jit_compile=jit_compile)
    quota = [num_episodes // len(envs) + (i < num_episodes % len(envs))
             for i in range(len(envs))]
    live = [i for i, games in enumerate(quota) if games > 0]
    width = len(live)
    if hasattr(policy, "actions"):
        def act(time_steps):
            batch = ts.TimeStep(*(np.stack(field) for field in zip(*time_steps)))
            return policy.actions(batch, max_batch_size=width)
    else:
        def act(time_steps):
            return [policy(time_step) for time_step in time_steps]
    action_dtype = envs[0].action_spec().dtype
    returns, lengths = [], []
    steps = 0
    current = {i: envs[i].reset() for i in live}
    game_return = dict.fromkeys(live, 0.0)
    game_length = dict.fromkeys(live, 0)
    while live:
        actions = act([current[i] for i in live])
        for i, action in zip(list(live), actions):
            if max_steps is not None and steps >= max_steps:
                return returns, lengths
            if should_stop is not None and should_stop():
                return returns, lengths
            time_step = envs[i].step(np.asarray(action, dtype=action_dtype))
            steps += 1
            if on_step is not None:
                on_step(envs[i], time_step)
            info = _game_info(envs[i])
            game_return[i] += float(time_step.reward)
            game_length[i] += 1
            ended = info["episode_ended"] if info is not None else bool(time_step.is_last())
            if ended:
                if info is not None:
                    game_return[i], game_length[i] = (info["episode_raw_return"],
                                                      info["episode_length"])
                returns.append(float(game_return[i]))
                lengths.append(int(game_length[i]))
                game_return[i], game_length[i] = 0.0, 0
                quota[i] -= 1
                if on_episode is not None:
                    on_episode(returns, lengths, steps)
                if not quota[i]:
                    live.remove(i)
                    continue
            current[i] = envs[i].reset() if time_step.is_last() else time_step
        if on_progress is not None:
            on_progress(returns, lengths, steps)
    return returns, lengths
