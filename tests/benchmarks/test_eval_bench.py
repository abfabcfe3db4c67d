"""eval_bench: one row per condition and environment count, the first count
the base of the speedups, on the real game."""

import json

from benchmarks import eval_bench


def test_rows_per_environment_count_with_speedups_over_the_first(tmp_path):
    path = tmp_path / "eval.json"
    rows = eval_bench.main(["--conditions", "der_nature_flatten_x1", "--envs", "1,3",
                            "--steps", "30", "--rounds", "1", "--json", str(path)])
    assert [(r["condition"], r["game"], r["envs"]) for r in rows] == [
        ("der_nature_flatten_x1", "RoadRunner", 1), ("der_nature_flatten_x1", "RoadRunner", 3)]
    assert rows[0]["speedup"] == 1.0
    assert all(r["steps_per_s"] > 0 for r in rows)
    assert rows[1]["speedup"] == rows[1]["steps_per_s"] / rows[0]["steps_per_s"]
    payload = json.loads(path.read_text())
    assert payload["benchmark"] == "eval_bench" and len(payload["rows"]) == 2
