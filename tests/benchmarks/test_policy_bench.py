"""policy_bench: one row per network with both compilations timed and the
auto choice named as the library resolves it."""

import json

import tensorflow as tf

from benchmarks import policy_bench

ON_ACCELERATOR = bool(tf.config.list_logical_devices("GPU")
                      + tf.config.list_logical_devices("TPU"))


def test_rows_time_both_compilations_and_name_the_auto_choice(tmp_path):
    path = tmp_path / "policy.json"
    rows = policy_bench.main(["--cases", "dqn/nature/flatten1,rainbow/nature/flatten1",
                              "--rounds", "1", "--calls", "1", "--json", str(path)])
    assert [r["case"] for r in rows] == ["dqn/nature/flatten1", "rainbow/nature/flatten1"]
    for row in rows:
        assert row["graph_ms"] > 0 and row["xla_ms"] > 0 and row["function_call_ms"] > 0
        chosen = row["xla_ms"] if row["auto"] == "xla" else row["graph_ms"]
        assert row["auto_over_best"] == chosen / min(row["graph_ms"], row["xla_ms"])
    if not ON_ACCELERATOR:
        assert [r["auto"] for r in rows] == ["xla", "graph"]
    payload = json.loads(path.read_text())
    assert payload["benchmark"] == "policy_bench" and len(payload["rows"]) == 2
