"""benchmarks/gpu_check: refuses CPU-only machines, summarises its JSON."""

import pytest
import tensorflow as tf

from benchmarks import gpu_check


def test_refuses_to_run_without_an_accelerator(tmp_path, capsys):
    if tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"):
        pytest.skip("this machine has an accelerator: nothing to refuse")
    assert gpu_check.accelerator() is None
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "sees no GPU or TPU" in error and "tensorflow[and-cuda]" in error
    assert not list(tmp_path.iterdir())  # nothing run, nothing written


def test_summary_rows_label_the_device_and_keep_our_rows_only():
    step = {"rows": [
        {"case": "rainbow/impala/softmoe4", "impl": "ours_xla", "median_ms": 9.5,
         "first_step_s": 40.0},
        {"case": "rainbow/impala/softmoe4", "impl": "ours_graph", "median_ms": 12.0,
         "first_step_s": 8.0},
        {"case": "rainbow/impala/softmoe4", "impl": "ours_xla", "error": "OOM"},
    ]}
    e2e = {"rows": [{"agent": "rainbow", "e2e_steps_per_s": 300.0,
                     "learner_alone_steps_per_s": 320.0, "overlap_updates": False,
                     "env_alone_steps_per_s": 900.0, "e2e_vs_slower_bound": 0.94}]}
    overlapped = {"rows": [{"agent": "rainbow", "e2e_steps_per_s": 310.0,
                            "overlap_updates": True}]}
    rows = gpu_check.summary_rows("NVIDIA H200", step, e2e, overlapped)
    assert {r["device"] for r in rows} == {"NVIDIA H200"}
    step_rows = [r for r in rows if r["measure"].startswith("train step")]
    assert [(r["variant"], r["value"]) for r in step_rows] == [
        ("ours_xla", 9.5), ("ours_graph", 12.0)]
    e2e_rows = {r["variant"]: r["value"] for r in rows
                if r["measure"] == "e2e rainbow serial"}
    assert e2e_rows == {"e2e_steps_per_s": 300.0, "learner_alone_steps_per_s": 320.0,
                        "env_alone_steps_per_s": 900.0, "e2e_vs_slower_bound": 0.94}
    assert [(r["variant"], r["value"]) for r in rows
            if r["measure"] == "e2e rainbow overlapped"] == [("e2e_steps_per_s", 310.0)]
    assert gpu_check.summary_rows("x", None, None, None) == []


def test_mirrored_rows_give_times_and_equality_per_case():
    mirrored = {"rows": [{"case": "dqn/nature/softmoe4", "replicas": 2,
                          "none_median_ms": 4.0, "mirrored_median_ms": 6.5,
                          "loss_max_abs_diff": 1e-8, "priorities_max_abs_diff": 0.0,
                          "weights_max_abs_diff": 2e-8}]}
    rows = gpu_check.mirrored_rows("NVIDIA H200", mirrored)
    assert {r["measure"] for r in rows} == {"mirrored dqn/nature/softmoe4 (2 replicas)"}
    assert {r["variant"]: r["value"] for r in rows} == {
        "none_median_ms": 4.0, "mirrored_median_ms": 6.5, "loss_max_abs_diff": 1e-8,
        "priorities_max_abs_diff": 0.0, "weights_max_abs_diff": 2e-8}
    assert gpu_check.mirrored_rows("x", None) == []
