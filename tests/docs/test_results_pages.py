"""The committed results pages agree with the run data committed next to
them: docs/results/atari100k/runs/ is laid out as a sweep root, so the
analysis run on it again must give the scores the page and its CSV show."""

import os

import pandas as pd
import pytest

from tf_softmoe.runs import analysis

ATARI100K = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "results",
                         "atari100k")


def test_atari100k_scores_come_from_the_committed_runs():
    result = analysis.analyze(os.path.join(ATARI100K, "runs"), reps=50, backend="numpy")
    committed = pd.read_csv(os.path.join(ATARI100K, "per_run.csv"))
    with open(os.path.join(ATARI100K, "README.md"), encoding="utf-8") as handle:
        page = handle.read()
    finished = result.per_run[result.per_run.status == "complete"]
    assert len(finished) >= 1
    for run in finished.itertuples():
        row = committed[(committed.condition == run.condition)
                        & (committed.game == run.game) & (committed.seed == run.seed)]
        assert len(row) == 1 and row.status.iloc[0] == "complete", run
        assert row.final_raw_score.iloc[0] == pytest.approx(run.final_raw_score)
        # The page's table groups thousands with a space.
        shown = f"{run.final_raw_score:,.1f}".replace(",", " ")
        assert f"**{shown}**" in page, (run.condition, run.game, shown)


@pytest.mark.parametrize("condition,game", [("der_nature_flatten_x1", "RoadRunner"),
                                            ("der_nature_softmoe4", "RoadRunner"),
                                            ("der_nature_flatten_x1", "Kangaroo")])
def test_atari100k_second_evaluation_is_the_committed_one(condition, game):
    # The page's second evaluation of a finished run (100 environments at
    # once) is the mean of the 100 games in the committed output.
    path = os.path.join(ATARI100K, "runs", condition, game, "seed_0",
                        "evaluate_100_envs.txt")
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    games = [line for line in lines if line.startswith("  episode ")]
    returns = [float(line.split("return ")[1].split(",")[0]) for line in games]
    assert len(returns) == 100
    mean = sum(returns) / len(returns)
    assert f"mean raw return {mean:.2f}" in lines[-1]
    with open(os.path.join(ATARI100K, "README.md"), encoding="utf-8") as handle:
        page = handle.read()
    assert f"mean {mean:,.1f}".replace(",", " ") in page
