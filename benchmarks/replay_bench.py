"""Replay memory: bytes per transition and sampling throughput at Atari scale.

For a uniform and a prioritized FrameReplayBuffer of ``--capacity`` slots
(default 1 000 000, 84x84 uint8 frames, stack 4) this reports:

  * bytes per transition, measured from the allocated arrays (``nbytes()``),
    next to the 7 200 B budget;
  * sampling throughput of ``sample(batch_size)`` in batches per second;
  * the cost of ``update_priorities`` on a batch and of one ``add``.

Filling: adding 1 M frames through ``add`` one by one takes minutes of Python,
so the buffer is filled by ``benchmarks.replay_fill.fill_with_synthetic_episodes``,
which builds the same arrays ``add`` would write for the same synthetic
episodes (tests/benchmarks/test_replay_fill.py checks the equality) in
vectorised chunks and loads them as a checkpoint is restored. Every frame is
written, so sampling reads real, distinct memory pages rather than the shared
zero page of an untouched allocation. The two buffers are built one after the
other (each holds ~7 GB; the fill briefly needs as much again).

Usage:
  python -m benchmarks.replay_bench [--capacity N] [--batch-size 32]
                                    [--rounds 200] [--json PATH]
"""

import argparse
import gc
import time

import numpy as np

from benchmarks.common import print_table, time_call, write_json
from benchmarks.replay_fill import fill_with_synthetic_episodes
from tf_softmoe.replay import FrameReplayBuffer

BUDGET_BYTES_PER_TRANSITION = 7200


def _bench_one(prioritized, capacity, batch_size, rounds, n_step):
    buffer = FrameReplayBuffer(capacity, frame_shape=(84, 84), stack_size=4,
                               n_step=n_step, gamma=0.99,
                               prioritized=prioritized, seed=0)
    start = time.perf_counter()
    fill_with_synthetic_episodes(buffer, capacity, episode_length=2000,
                                 seed=0)
    fill_s = time.perf_counter() - start

    sample = time_call(lambda: buffer.sample(batch_size), rounds=rounds,
                       warmup=10)
    row = {
        "mode": "prioritized" if prioritized else "uniform",
        "capacity": capacity,
        "n_step": n_step,
        "batch_size": batch_size,
        "bytes_per_transition": buffer.nbytes() / capacity,
        "budget": BUDGET_BYTES_PER_TRANSITION,
        "fill_s": fill_s,
        "sample_ms": sample["median_ms"],
        "sample_ms_min": sample["min_ms"],
        "sample_ms_max": sample["max_ms"],
        "batches_per_s": 1e3 / sample["median_ms"],
    }
    if prioritized:
        rng = np.random.default_rng(1)
        indices = buffer.sample(batch_size)["indices"]

        def update():
            buffer.update_priorities(indices, rng.random(batch_size) + 0.01)

        row["update_ms"] = time_call(update, rounds=rounds,
                                     warmup=10)["median_ms"]
        step = time_call(lambda: (update(), buffer.sample(batch_size)),
                         rounds=rounds, warmup=10)
        row["sample_update_per_s"] = 1e3 / step["median_ms"]
    frame = np.zeros((84, 84), np.uint8)
    adds = 2000
    start = time.perf_counter()
    for k in range(adds):
        buffer.add(frame, k % 18, 0.0, terminal=False)
    row["add_us"] = (time.perf_counter() - start) / adds * 1e6
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--n-step", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args(argv)

    rows = []
    for prioritized in (False, True):
        rows.append(_bench_one(prioritized, args.capacity, args.batch_size,
                               args.rounds, args.n_step))
        gc.collect()
    estimate = FrameReplayBuffer.estimate_nbytes(1_000_000, prioritized=True)
    print_table(rows, ["mode", "capacity", "bytes_per_transition", "budget",
                       "fill_s", "sample_ms", "batches_per_s", "update_ms",
                       "sample_update_per_s", "add_us"])
    print(f"layout at 1 M, prioritized: {estimate / 1e6:.2f} B per transition "
          f"({estimate / 2**30:.2f} GiB)")
    write_json(args.json, "replay_bench", rows,
               layout_bytes_per_transition_1m_prioritized=estimate / 1e6)
    return rows


if __name__ == "__main__":
    main()
