"""conv_bench: the per-layer rows, their FLOP rates and the per-step sums."""

import argparse
import json

import pytest

from benchmarks import conv_bench
from benchmarks.peers import conv_layers


def test_impala_layers_cover_the_fifteen_convolutions_of_the_encoder():
    layers = conv_layers.impala_layers()
    assert sum(count for *_, count in layers) == 15
    assert [(size, cin, cout) for _, size, cin, cout, _ in layers] == [
        (84, 4, 16), (42, 16, 16), (42, 16, 32), (21, 32, 32), (21, 32, 32), (11, 32, 32)]
    # 2 · 32 · 21 · 21 · 32 · 9 · 32 multiply-adds.
    assert conv_layers.gflop(32, 21, 32, 32) == pytest.approx(0.260112384)


def fake_rows(impl, forward, filter_grad, input_grad):
    return [{"impl": impl, "layer": name, "count": count, "forward_ms": forward,
             "filter_grad_ms": filter_grad, "input_grad_ms": input_grad}
            for name, _, _, _, count in conv_layers.impala_layers()]


def test_per_step_counts_each_pass_as_the_train_step_runs_it():
    rows = fake_rows("a", 1.0, 2.0, 4.0) + fake_rows("b", 0.5, 0.5, 0.5)
    steps = {s["impl"]: s for s in conv_bench.per_step(rows, forward_passes=3)}
    # 15 convs × 3 forwards; 15 filter gradients; 14 input gradients (none
    # for the first conv, whose input is the observation).
    assert steps["a"]["forward_ms"] == 45.0
    assert steps["a"]["filter_grad_ms"] == 30.0
    assert steps["a"]["input_grad_ms"] == 56.0
    assert steps["a"]["total_ms"] == 131.0
    assert steps["b"]["total_ms"] == pytest.approx(0.5 * (45 + 15 + 14))


def test_add_flops_divides_each_layer_by_its_time():
    rows = fake_rows("a", 2.0, 4.0, 1.0)
    conv_bench.add_flops(rows, batch=32)
    blocks = rows[3]
    assert blocks["layer"] == "stack_1_blocks"
    assert blocks["forward_gflops"] == pytest.approx(0.260112384 / 2.0 * 1e3)
    assert blocks["input_grad_gflops"] == pytest.approx(0.260112384 * 1e3)


def test_our_worker_times_every_layer(tmp_path):
    args = argparse.Namespace(impls="ours", batch_size=2, repeats=1, rounds=1,
                              threads=0, forward_passes=3, peer_root=str(tmp_path))
    rows, steps, info = conv_bench.run(args)
    assert [r["layer"] for r in rows] == [n for n, *_ in conv_layers.impala_layers()]
    for row in rows:
        assert row["impl"] == "ours"
        assert all(row[k] > 0 for k in conv_bench.KINDS)
    assert [s["impl"] for s in steps] == ["ours"]
    assert info["ours"]["tensorflow"]
    json.dumps(rows)


def test_missing_torch_venv_is_skipped_with_the_command_that_makes_it(tmp_path):
    messages = []
    args = argparse.Namespace(impls="torch", batch_size=2, repeats=1, rounds=1,
                              threads=0, forward_passes=3, peer_root=str(tmp_path))
    rows, steps, _ = conv_bench.run(args, log=messages.append)
    assert rows == [] and steps == []
    assert "--setup-peers" in messages[0]


def test_unknown_implementation_is_refused():
    args = argparse.Namespace(impls="ours,mxnet", batch_size=2, repeats=1, rounds=1,
                              threads=0, forward_passes=3, peer_root="/nonexistent")
    with pytest.raises(ValueError, match="mxnet"):
        conv_bench.run(args)
