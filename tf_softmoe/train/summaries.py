"""TensorBoard output of a run: scalars per iteration, scalars within an
iteration (`IterationMonitor`, every `summary_period` agent steps, and the
diagnostics every `diagnostics_period` updates), a custom-scalars layout that
groups them, and the run's hyper-parameters for HParams.

Tags within an iteration: `updates/loss`, `updates/td_error_mean`,
`updates/td_error_var` (means over the updates since the previous point),
`perf/recent_agent_steps_per_second`, `episodes/return` and
`episodes/length` (one point per episode, at the agent step it ended), and
the diagnostics under their per-iteration tags (`train/q_mean`,
`diagnostics/srank`, ...: a measurement at one step either way).

Everything is written here, in eager mode, from values the compiled train and
diagnostics steps returned: summaries inside `jit_compile=True` would fail.
"""

import math

import numpy as np
import tensorflow as tf
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import summary as custom_scalar_summary
from tensorboard.plugins.hparams import api as hparams_api

# metrics.csv column (prefix) → TensorBoard tag (prefix).
_TAGS = (
    ("train_episode_return", "train/episode_return"),
    ("train_episode_length", "train/episode_length"),
    ("train_episodes", "train/episodes"),
    ("train_human_normalized_score", "train/human_normalized_score"),
    ("train_loss", "train/loss"),
    ("train_td_error_mean", "train/td_error_mean"),
    ("train_td_error_var", "train/td_error_var"),
    ("train_steps_per_second", "perf/agent_steps_per_second"),
    ("replay_size", "perf/replay_size"),
    ("updates", "perf/updates"),
    ("q_mean", "train/q_mean"),
    ("q_std", "train/q_std"),
    ("srank", "diagnostics/srank"),
    ("parameter_norm", "diagnostics/parameter_norm"),
    ("dormant_fraction_tau_", "diagnostics/dormant_percent_tau_"),
    ("router_grad_norm", "router/grad_norm"),
    ("router_weight_norm", "router/weight_norm"),
    ("expert_gate_", "experts/gate_"),
    ("tokens_per_expert_", "experts/tokens_per_expert_"),
    ("eval_episode_return", "eval/episode_return"),
    ("eval_episode_length", "eval/episode_length"),
    ("eval_human_normalized_score", "eval/human_normalized_score"),
)

LAYOUT = (
    ("Returns", [("Episode return (raw)",
                  r"(train|eval)/episode_return|episodes/return"),
                 ("Human-normalised score", r"(train|eval)/human_normalized_score"),
                 ("Episode length", r"(train|eval)/episode_length|episodes/length")]),
    ("Learning", [("Loss", r"(train|updates)/loss"),
                  ("Q-values", r"train/q_(mean|std)"),
                  ("TD error", r"(train|updates)/td_error_(mean|var)")]),
    ("Network health", [("Dormant neurons (%)", r"diagnostics/dormant_percent_tau_.*"),
                        ("Feature rank (srank)", r"diagnostics/srank"),
                        ("Parameter norm", r"diagnostics/parameter_norm")]),
    ("Experts", [("Gate per expert", r"experts/gate_\d+"),
                 ("Tokens per expert", r"experts/tokens_per_expert_\d+"),
                 ("Router", r"router/.*")]),
    ("Throughput", [("Agent steps/s", r"perf/(recent_)?agent_steps_per_second"),
                    ("Replay size", r"perf/replay_size")]),
)


def tag_for(column):
    """The TensorBoard tag of a metrics.csv column (None: not summarised)."""
    for prefix, tag in _TAGS:
        if column == prefix or (prefix.endswith("_") and column.startswith(prefix)):
            return tag + column[len(prefix):]
    return None


def flatten_diagnostics(diagnostics):
    """Diagnostics as metrics.csv columns: arrays become `name_0`, `name_1`,
    ... (e.g. `expert_gate_0`), scalars keep their name."""
    out = {}
    for key, value in (diagnostics or {}).items():
        array = np.asarray(value)
        if array.ndim == 0:
            out[key] = float(array)
        else:
            for i, item in enumerate(array.reshape(-1)):
                out[f"{key}_{i}"] = float(item)
    return out


def custom_scalar_layout():
    categories = []
    for title, charts in LAYOUT:
        categories.append(layout_pb2.Category(title=title, chart=[
            layout_pb2.Chart(title=name, multiline=layout_pb2.MultilineChartContent(
                tag=[regex])) for name, regex in charts]))
    return layout_pb2.Layout(category=categories)


def flat_hparams(config):
    """The config's leaves as HParams values (str/bool/int/float)."""
    out = {}

    def visit(prefix, value):
        if isinstance(value, dict):
            for key, item in value.items():
                visit(f"{prefix}{key}.", item)
        elif isinstance(value, (bool, int, float, str)):
            out[prefix.rstrip(".")] = value
        else:
            out[prefix.rstrip(".")] = str(value)

    for section, values in config.to_dict().items():
        if isinstance(values, dict):
            for key, value in values.items():
                visit(f"{section}.{key}.", value)
        else:
            visit(f"{section}.", values)
    return out


class SummaryWriter:
    """Writes a run's TensorBoard events under `logdir`."""

    def __init__(self, logdir, config):
        self.logdir = logdir
        self.config = config
        self._writer = tf.summary.create_file_writer(logdir)

    def write_hparams(self):
        """The layout and the hyper-parameters (once per process start)."""
        with self._writer.as_default():
            tf.summary.experimental.write_raw_pb(
                custom_scalar_summary.pb(custom_scalar_layout()).SerializeToString(),
                step=0)
            hparams_api.hparams(flat_hparams(self.config),
                                trial_id=f"{self.config.game}-seed{self.config.schedule.seed}")
        self._writer.flush()

    def write_iteration(self, row, step):
        """Scalars of one finished iteration (NaNs skipped)."""
        self._write_columns(row, step)
        self._writer.flush()

    def write_diagnostics(self, diagnostics, step):
        """Diagnostics taken within an iteration, under their per-iteration
        tags. Not flushed: the writer flushes on its own schedule."""
        self._write_columns(flatten_diagnostics(diagnostics), step)

    def write_scalars(self, scalars, step):
        """`{tag: value}` at one step (NaNs skipped, not flushed)."""
        with self._writer.as_default():
            for tag, value in scalars.items():
                if math.isfinite(value):
                    tf.summary.scalar(tag, value, step=step)

    def write_episodes(self, returns, lengths, end_steps):
        """One `episodes/return` and `episodes/length` point per finished
        episode, at the agent step it ended (not flushed)."""
        with self._writer.as_default():
            for episode_return, length, step in zip(returns, lengths, end_steps):
                tf.summary.scalar("episodes/return", float(episode_return), step=step)
                tf.summary.scalar("episodes/length", float(length), step=step)

    def flush(self):
        self._writer.flush()

    def _write_columns(self, row, step):
        with self._writer.as_default():
            for column, value in row.items():
                tag = tag_for(column)
                if tag is None or not isinstance(value, (int, float)):
                    continue
                value = float(value)
                if not math.isfinite(value):
                    continue
                if tag.startswith("diagnostics/dormant_percent"):
                    value *= 100.0
                tf.summary.scalar(tag, value, step=step)
