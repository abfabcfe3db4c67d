"""Tests for tools/check_bazel_targets.py (test files vs. Bazel test targets)."""

import pytest

from tools import check_bazel_targets as cbt


@pytest.mark.parametrize("label, path", [
    ("//:tests/layers/test_softmoe.py", "tests/layers/test_softmoe.py"),
    ("//tests/layers:test_softmoe.py", "tests/layers/test_softmoe.py"),
    ("@//tests/layers:test_softmoe.py", "tests/layers/test_softmoe.py"),
    ("//:setup.cfg", "setup.cfg"),
    ("//tests/layers", "tests/layers/layers"),
    ("@rules_python//python:defs.bzl", None),
])
def test_label_to_path(label, path):
    assert cbt.label_to_path(label) == path


def test_label_to_path_rejects_relative_label():
    with pytest.raises(ValueError, match="not an absolute Bazel label"):
        cbt.label_to_path(":test_x.py")


def test_missing_lists_files_without_target_sorted():
    labels = [
        "//:tools/pytest_runner.py",
        "//:tests/layers/test_a.py",
        "//tests/envs:test_c.py",
    ]
    files = [
        "tests/train/test_d.py",
        "tests/layers/test_a.py",
        "tests/envs/test_c.py",
        "tests/layers/test_b.py",
    ]
    assert cbt.missing_test_targets(labels, files) == [
        "tests/layers/test_b.py", "tests/train/test_d.py"]


def test_missing_is_empty_when_every_file_has_a_target():
    files = ["tests/layers/test_a.py", "tests/envs/test_c.py"]
    labels = ["//:" + f for f in files] + ["@remote_coverage_tools//:x.sh"]
    assert cbt.missing_test_targets(labels, files) == []


def test_same_name_in_other_directory_is_not_a_target():
    labels = ["//:tests/layers/test_utils.py"]
    files = ["tests/layers/test_utils.py", "tests/envs/test_utils.py"]
    assert cbt.missing_test_targets(labels, files) == ["tests/envs/test_utils.py"]


def test_find_test_files_uses_pytest_patterns(tmp_path):
    for rel in ["tests/layers/test_a.py", "tests/layers/b_test.py",
                "tests/layers/helpers.py", "tests/conftest.py",
                "tests/envs/data/test_fixture.txt",
                "tests/.hidden/test_hidden.py",
                "tests/layers/__pycache__/test_a.py"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    assert cbt.find_test_files("tests", root=str(tmp_path)) == [
        "tests/layers/b_test.py", "tests/layers/test_a.py"]


def test_main_reports_missing_files_and_fails(monkeypatch, tmp_path, capsys):
    for rel in ["tests/layers/test_a.py", "tests/layers/test_b.py"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cbt, "query_test_sources",
                        lambda bazel: ["//:tests/layers/test_a.py"])
    assert cbt.main([]) == 1
    assert "tests/layers/test_b.py" in capsys.readouterr().err

    monkeypatch.setattr(cbt, "query_test_sources", lambda bazel: [
        "//:tests/layers/test_a.py", "//:tests/layers/test_b.py"])
    assert cbt.main([]) == 0


def test_main_fails_when_bazel_is_missing(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    assert cbt.main(["--bazel", str(tmp_path / "no_such_bazel")]) == 2
    assert "failed" in capsys.readouterr().err
