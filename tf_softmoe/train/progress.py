"""Progress within an iteration: periodic lines and TensorBoard scalars.

With the paper's 250 000-step iterations an iteration takes hours on a CPU,
and the per-iteration line and scalars come only at its end. An
`IterationMonitor` reports while the iteration runs:

- a progress line every `progress_seconds` (and/or every `progress_steps`
  agent steps): steps done in the iteration, recent steps/s, updates,
  episodes finished in the iteration and the last one's return, and the ETA
  of the iteration and of the run. The same plain lines whether or not the
  output is a terminal: they go to the log and to stdout, flushed, like the
  per-iteration line, so they read the same in a terminal, a pipe or a
  batch job's log file;
- TensorBoard scalars every `summary_period` agent steps (the reference's
  `summary_writing_frequency`), see `summaries`;
- during an iteration's evaluation games (100 for DER, minutes to a quarter
  of an hour on a CPU): a line when they start and, every
  `progress_seconds`, one with the games played, their mean return, the
  steps/s of play and the ETA of the evaluation.

`Trainer.run` asks one question per agent step: `step >= monitor.next_step
or monitor.clock() >= monitor.next_time`; everything else (strings,
summaries, counter reads) happens only when that is true.
"""

import math
import time

from absl import logging


def format_seconds(seconds):
    """`1h02m03s`, or `?` for an unknown (non-finite) duration."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def print_line(message):
    """Logs `message` and prints it to stdout, flushed."""
    logging.info(message)
    print(message, flush=True)


def _mean(values):
    return sum(values) / len(values) if values else float("nan")


class IterationMonitor:
    """Progress lines and within-iteration summaries of a run's iterations.

    Call `begin(iteration, stats)` before each `Trainer.run` of an
    iteration (also a resumed one: `stats` is its restored `PhaseStats`), and
    pass the monitor to `Trainer.run`, which calls `update(step, stats)` when
    `step >= next_step or clock() >= next_time`.

    Args:
      name: shown at the start of each line (the game).
      num_iterations: iterations of the run (for the run's ETA).
      steps_per_iteration: agent steps per iteration.
      summary_period: agent steps between TensorBoard points (0: none).
      progress_seconds: seconds between progress lines (0: none by time).
      progress_steps: agent steps between progress lines (0: none by steps).
      writer: a `summaries.SummaryWriter`, or None for no summaries.
      updates: callable returning the updates done in the run so far (the
        agent's train-step counter), read only when a line is made.
      report: callable taking each line (default: `print_line`).
      record: callable taking, with each line, the same progress as a dict
        (`progress_record`), or None; a run passes
        `RunDirectory.write_progress`, whose progress.json a sweep reads.
      clock: seconds, monotonic (default `time.monotonic`; tests pass a fake).
    """

    def __init__(self, name, num_iterations, steps_per_iteration, summary_period=500,
                 progress_seconds=30.0, progress_steps=0, writer=None, updates=None,
                 report=print_line, record=None, clock=time.monotonic):
        self.name = name
        self.num_iterations = num_iterations
        self.steps_per_iteration = steps_per_iteration
        self.summary_period = summary_period
        self.progress_seconds = progress_seconds
        self.progress_steps = progress_steps
        self.writer = writer
        self._updates = updates
        self.report = report
        self.record = record
        self.clock = clock
        self.iteration = 0
        self.next_step = math.inf
        self.next_time = math.inf
        self._last_record = None
        self._evaluation = None

    # ------------------------------------------------------------- schedule
    @staticmethod
    def _next_multiple(step, period):
        return (step // period + 1) * period if period else math.inf

    def _reschedule(self):
        self.next_step = min(self._next_summary_step, self._next_progress_step)
        self.next_time = self._next_progress_time

    def begin(self, iteration, step, stats):
        """Starts (or resumes) iteration `iteration` at agent step `step`
        with `stats` (steps and episodes already done in it)."""
        now = self.clock()
        self.iteration = iteration
        self._line_mark = (now, stats.agent_steps)
        self._summary_mark = (now, stats.agent_steps)
        self._summary_index = (len(stats.losses), len(stats.episode_end_steps))
        self._next_summary_step = self._next_multiple(step, self.summary_period)
        self._next_progress_step = self._next_multiple(step, self.progress_steps)
        self._next_progress_time = (now + self.progress_seconds
                                    if self.progress_seconds > 0 else math.inf)
        self._reschedule()

    def update(self, step, stats):
        """Writes what is due at agent step `step` (after its update)."""
        now = self.clock()
        if step >= self._next_summary_step:
            self._summarise(step, stats, now)
            self._next_summary_step = self._next_multiple(step, self.summary_period)
        if step >= self._next_progress_step or now >= self._next_progress_time:
            self.report(self.line(stats, now))
            self._last_record = self.progress_record(step, stats, now)
            if self.record is not None:
                self.record(self._last_record)
            self._line_mark = (now, stats.agent_steps)
            self._next_progress_step = self._next_multiple(step, self.progress_steps)
            if self.progress_seconds > 0:
                self._next_progress_time = now + self.progress_seconds
        self._reschedule()

    # ----------------------------------------------------------- evaluation
    def begin_evaluation(self, iteration, step, games, envs=1):
        """Starts the evaluation after iteration `iteration` (0-based), at
        agent step `step`, of `games` games in `envs` environments at once:
        reports a line saying so."""
        now = self.clock()
        self._evaluation = {"iteration": iteration, "step": int(step), "games": games,
                            "envs": envs, "start": now, "next_time": (
                                now + self.progress_seconds
                                if self.progress_seconds > 0 else math.inf)}
        self.report(f"[{self.name}] evaluation after iteration "
                    f"{iteration + 1}/{self.num_iterations}: {games} games"
                    + (f" in {envs} environments at once" if envs > 1 else ""))
        self._record_evaluation(0)

    def evaluation_progress(self, returns, lengths, steps):
        """Called as the evaluation goes (`loop.evaluate`'s `on_progress`),
        with the returns and lengths of the games finished so far and the
        agent steps played; reports a line when `progress_seconds` have
        passed since the previous one."""
        del lengths  # the line shows the steps/s of all of them
        evaluation = self._evaluation
        if evaluation is None or evaluation["next_time"] == math.inf:
            return
        now = self.clock()
        if now < evaluation["next_time"]:
            return
        evaluation["next_time"] = now + self.progress_seconds
        self.report(self.evaluation_line(returns, steps, now))
        self._record_evaluation(len(returns), steps)

    def evaluation_line(self, returns, steps, now):
        """The evaluation's progress line after `returns` games of `steps`
        agent steps in all, at clock time `now`. One environment: with the
        ETA from the games' pace. Several: the games end together near the
        end, so the line gives the agent steps played instead of an ETA."""
        evaluation = self._evaluation
        seconds = now - evaluation["start"]
        rate = steps / seconds if seconds > 0 else float("nan")
        played = len(returns)
        head = (f"[{self.name}] evaluation after iteration "
                f"{evaluation['iteration'] + 1}/{self.num_iterations}: "
                f"{played}/{evaluation['games']} games | ")
        mean = f"mean return {_mean(returns):.2f}" if played else "no game ended yet"
        if evaluation["envs"] > 1:
            return f"{head}{steps} agent steps | {mean} | {rate:.0f} steps/s"
        eta = ((evaluation["games"] - played) * seconds / played if played
               else float("nan"))
        return f"{head}{mean} | {rate:.0f} steps/s | ETA {format_seconds(eta)}"

    def _record_evaluation(self, played, steps=0):
        if self.record is None:
            return
        evaluation = self._evaluation
        # The training numbers of the newest line stay (a sweep's ETA is
        # made of training rates); a run resumed into its evaluation has none.
        values = dict(self._last_record or {
            "iteration": evaluation["iteration"], "num_iterations": self.num_iterations,
            "iteration_steps": self.steps_per_iteration,
            "steps_per_iteration": self.steps_per_iteration,
            "agent_steps": evaluation["step"],
            "total_steps": self.num_iterations * self.steps_per_iteration,
            "steps_per_second": None,
            "updates": self._updates() if self._updates is not None else None,
            "episodes": None})
        values.update(phase="evaluation", iteration=evaluation["iteration"],
                      agent_steps=evaluation["step"], eval_games=played,
                      eval_episodes=evaluation["games"], eval_steps=int(steps),
                      updated=time.time())
        self.record(values)

    def diagnostics(self, diagnostics, step):
        """Diagnostics taken within the iteration, to TensorBoard."""
        if self.writer is not None:
            self.writer.write_diagnostics(diagnostics, step)

    # --------------------------------------------------------------- output
    @staticmethod
    def _rate(mark, now, steps):
        start, start_steps = mark
        seconds = now - start
        return (steps - start_steps) / seconds if seconds > 0 else float("nan")

    def line(self, stats, now):
        """The progress line for `stats` at clock time `now`."""
        done = stats.agent_steps
        rate = self._rate(self._line_mark, now, done)
        left = max(self.steps_per_iteration - done, 0)
        run_left = left + (self.num_iterations - self.iteration - 1) * self.steps_per_iteration
        iteration_eta = left / rate if rate > 0 else float("nan")
        run_eta = run_left / rate if rate > 0 else float("nan")
        updates = self._updates() if self._updates is not None else stats.updates
        last = (f"last return {stats.episode_returns[-1]:.2f}" if stats.episode_returns
                else "no return yet")
        return (f"[{self.name}] iteration {self.iteration + 1}/{self.num_iterations} "
                f"progress: {done}/{self.steps_per_iteration} steps "
                f"({100.0 * done / self.steps_per_iteration:.0f}%) | "
                f"{rate:.0f} steps/s | {updates} updates | "
                f"{len(stats.episode_returns)} episodes, {last} | "
                f"ETA iteration {format_seconds(iteration_eta)}, "
                f"run {format_seconds(run_eta)}")

    def progress_record(self, step, stats, now):
        """The progress of the line at `now` as plain values: `phase`
        ("training"), `iteration` (0-based) and `num_iterations`,
        `iteration_steps` of `steps_per_iteration`, the run's `agent_steps`
        (`step`) and `total_steps`, `steps_per_second` since the previous line
        (None when unknown), `updates`, `episodes`, and `updated` (Unix time).
        During an evaluation the record keeps these and has `phase`
        "evaluation", `eval_games` played of `eval_episodes`."""
        rate = self._rate(self._line_mark, now, stats.agent_steps)
        return {
            "phase": "training",
            "iteration": self.iteration, "num_iterations": self.num_iterations,
            "iteration_steps": stats.agent_steps,
            "steps_per_iteration": self.steps_per_iteration,
            "agent_steps": int(step),
            "total_steps": self.num_iterations * self.steps_per_iteration,
            "steps_per_second": rate if math.isfinite(rate) else None,
            "updates": self._updates() if self._updates is not None else stats.updates,
            "episodes": len(stats.episode_returns),
            "updated": time.time()}

    def _summarise(self, step, stats, now):
        if self.writer is None:
            return
        losses_from, episodes_from = self._summary_index
        scalars = {"perf/recent_agent_steps_per_second": self._rate(
            self._summary_mark, now, stats.agent_steps)}
        if len(stats.losses) > losses_from:
            scalars["updates/loss"] = _mean(stats.losses[losses_from:])
            scalars["updates/td_error_mean"] = _mean(stats.td_error_means[losses_from:])
            scalars["updates/td_error_var"] = _mean(stats.td_error_vars[losses_from:])
        self.writer.write_scalars(scalars, step)
        # Aligned from the end: a partial iteration restored from a
        # checkpoint written before `episode_end_steps` existed has returns
        # without end steps.
        new = len(stats.episode_end_steps) - episodes_from
        if new > 0:
            self.writer.write_episodes(stats.episode_returns[-new:],
                                       stats.episode_lengths[-new:],
                                       stats.episode_end_steps[-new:])
        self._summary_mark = (now, stats.agent_steps)
        self._summary_index = (len(stats.losses), len(stats.episode_end_steps))
