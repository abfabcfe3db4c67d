"""Shared output helpers for the benchmarks: an aligned table and a JSON file."""

import json
import os
import platform
import statistics
import time


def machine_info():
    """Describes where a benchmark ran, stored beside its numbers."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
    except ImportError:  # a peer's environment: no TensorFlow to describe
        info["tensorflow"] = None
        return info
    info["tensorflow"] = tf.__version__
    info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    return info


def time_call(fn, rounds=20, warmup=3):
    """Median and spread of `fn()` wall time in milliseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return {
        "median_ms": statistics.median(samples),
        "min_ms": min(samples),
        "max_ms": max(samples),
        "rounds": rounds,
    }


def print_table(rows, columns):
    """Prints `rows` (dicts) as an aligned text table over `columns`."""
    def fmt(value):
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    cells = [[fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def write_json(path, name, rows, **extra):
    """Writes the benchmark's rows and the machine description to `path`."""
    if not path:
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    payload = {"benchmark": name, "machine": machine_info(), "rows": rows}
    payload.update(extra)
    from tf_softmoe import _files  # pylint: disable=import-outside-toplevel
    _files.atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True))
    print(f"wrote {path}")
