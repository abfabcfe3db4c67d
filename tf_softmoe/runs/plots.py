"""The figures of a sweep's report, drawn from an `analysis.Analysis`
(matplotlib, Agg backend: files only)."""

from tf_softmoe import metrics
from tf_softmoe.runs import analysis as analysis_lib


def _format_steps(value):
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def _frames_axis(matplotlib, axis):
    """Agent steps shown as frames (4 per step), with k/M units."""
    axis.xaxis.set_major_formatter(
        matplotlib.ticker.FuncFormatter(lambda x, _: _format_steps(x)))


def plot_learning_curves(analysis, path, title=None):
    """IQM human-normalised score over frames, with interval bands."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for condition in analysis.conditions:
        rows = analysis.curves[analysis.curves.condition == condition]
        if rows.empty:
            continue
        frames = 4 * rows.agent_steps.to_numpy()
        iqm = rows.iqm.to_numpy()
        line = axis.errorbar(frames, iqm, yerr=[iqm - rows.lower, rows.upper - iqm],
                             marker="o", markersize=3, capsize=3, label=condition)
        axis.fill_between(frames, rows.lower, rows.upper, alpha=0.2,
                          color=line.lines[0].get_color())
    axis.set_xlabel("Frames (4 per agent step)")
    axis.set_ylabel("IQM human-normalised score")
    _frames_axis(matplotlib, axis)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(title or "IQM learning curves (95 % stratified-bootstrap CIs)",
                   fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_aggregate_intervals(analysis, path, title=None):
    """The four aggregates of each condition with their intervals."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
    conditions = [c for c in analysis.conditions
                  if c in set(analysis.aggregates.condition)]
    names = list(metrics.DEFAULT_METRICS)
    figure, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names),
                                                        0.5 * len(conditions) + 1.5),
                                sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, name in zip(axes, names):
        for i, condition in enumerate(conditions):
            row = analysis.aggregates[(analysis.aggregates.condition == condition)
                                      & (analysis.aggregates.metric == name)].iloc[0]
            color = colors[i % len(colors)]
            axis.barh(i, row.upper - row.lower, left=row.lower, height=0.6,
                      color=color, alpha=0.6)
            axis.vlines(row.point, i - 0.3, i + 0.3, color="black", linewidth=1.5)
        axis.set_title(analysis_lib.METRIC_LABELS[name], fontsize=10)
        axis.grid(axis="x", alpha=0.3)
        axis.set_xlabel("Human-normalised score")
    axes[0].set_yticks(range(len(conditions)))
    axes[0].set_yticklabels(conditions, fontsize=8)
    axes[0].invert_yaxis()
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_probability_of_improvement(analysis, path, title=None):
    """P(condition > baseline) with its interval, one bar per condition."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
    rows = analysis.improvement
    figure, axis = plt.subplots(figsize=(8, 0.5 * max(1, len(rows)) + 1.6))
    for i, row in enumerate(rows.itertuples()):
        axis.barh(i, row.upper - row.lower, left=row.lower, height=0.6, alpha=0.6)
        axis.vlines(row.probability, i - 0.3, i + 0.3, color="black", linewidth=1.5)
    axis.axvline(0.5, color="gray", linestyle="--", linewidth=1)
    axis.set_yticks(range(len(rows)))
    axis.set_yticklabels(list(rows.condition), fontsize=8)
    axis.invert_yaxis()
    axis.set_xlim(0, 1)
    axis.set_xlabel(f"P(condition > {analysis.baseline}), 95 % CI")
    axis.grid(axis="x", alpha=0.3)
    figure.suptitle(title or "Probability of improvement", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_run_curves(analysis, path, title=None):
    """Raw score over frames of every run, one panel per game, one colour
    per condition, one line per seed (a run not counted is dashed)."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
    curves = analysis.run_curves.dropna(subset=["raw_score"])
    games = [game for game in analysis.games if (curves.game == game).any()]
    columns = min(len(games), 3)
    rows = -(-len(games) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.3 * rows),
                                squeeze=False)
    colours = {condition: f"C{i}" for i, condition in enumerate(analysis.conditions)}
    for axis, game in zip(axes.flat, games):
        for condition in analysis.conditions:
            for seed, run in curves[(curves.game == game)
                                    & (curves.condition == condition)].groupby("seed"):
                counted = (run.status == "complete").all()
                axis.plot(4 * run.agent_steps, run.raw_score, marker="o", markersize=3,
                          color=colours[condition], linestyle="-" if counted else "--",
                          label=f"{condition} (seed {seed}"
                          + ("" if counted else ", not counted") + ")")
        axis.set_title(game, fontsize=9)
        axis.set_xlabel("Frames (4 per agent step)", fontsize=8)
        axis.set_ylabel("Raw score", fontsize=8)
        _frames_axis(matplotlib, axis)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6)
    for axis in list(axes.flat)[len(games):]:
        axis.set_visible(False)
    figure.suptitle(title or "Raw score of every run", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
