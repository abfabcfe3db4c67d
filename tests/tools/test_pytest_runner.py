"""Tests for tools/pytest_runner.py (the main of every Bazel pytest target)."""

import os
import sys

import pytest

from tools import pytest_runner


def test_pytest_args_put_file_last_and_use_bazel_dirs():
    environ = {"TEST_TMPDIR": "/t/tmp", "XML_OUTPUT_FILE": "/t/test.xml"}
    args = pytest_runner.pytest_args(
        "tests/layers/test_x.py", "/r", ["-k", "soft"], environ)
    assert args[-1] == "tests/layers/test_x.py"
    assert args[-3:-1] == ["-k", "soft"]
    assert "--rootdir=/r" in args
    assert "--import-mode=importlib" in args
    assert "--basetemp=" + os.path.join("/t/tmp", "pytest") in args
    assert "--junitxml=/t/test.xml" in args


def test_pytest_args_outside_bazel_have_no_bazel_dirs():
    args = pytest_runner.pytest_args("tests/test_x.py", "/r", [], {})
    assert not [a for a in args if a.startswith(("--basetemp", "--junitxml"))]


def test_workspace_root_prefers_test_srcdir(monkeypatch, tmp_path):
    (tmp_path / "my_ws").mkdir()
    monkeypatch.setenv("TEST_SRCDIR", str(tmp_path))
    monkeypatch.setenv("TEST_WORKSPACE", "my_ws")
    assert pytest_runner.workspace_root() == str(tmp_path / "my_ws")


def test_workspace_root_falls_back_to_directory_above_tools(monkeypatch):
    monkeypatch.delenv("TEST_SRCDIR", raising=False)
    monkeypatch.delenv("RUNFILES_DIR", raising=False)
    expected = os.path.dirname(os.path.dirname(
        os.path.abspath(pytest_runner.__file__)))
    assert pytest_runner.workspace_root() == expected


def _run_in(monkeypatch, root, argv):
    """Runs pytest_runner.main with `root` as the workspace, restoring state."""
    monkeypatch.setenv("TEST_SRCDIR", str(root.parent))
    monkeypatch.setenv("TEST_WORKSPACE", root.name)
    monkeypatch.setenv("PYTHONPATH", "")
    monkeypatch.delenv("XML_OUTPUT_FILE", raising=False)
    monkeypatch.setenv("TEST_TMPDIR", str(root.parent / "tmp"))
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return pytest_runner.main(["pytest_runner.py"] + argv)


@pytest.mark.parametrize("body, status", [
    ("def test_ok():\n    assert 1 + 1 == 2\n", 0),
    ("def test_bad():\n    assert 1 + 1 == 3\n", 1),
    ("VALUE = 1\n", 5),
])
def test_main_returns_pytest_status(monkeypatch, tmp_path, capsys, body, status):
    root = tmp_path / "ws"
    (root / "tests").mkdir(parents=True)
    test_name = f"test_runner_case_{status}.py"
    (root / "tests" / test_name).write_text(body)
    assert _run_in(monkeypatch, root, [f"tests/{test_name}"]) == status
    if status == 5:
        assert "collected no tests" in capsys.readouterr().err


def test_main_puts_workspace_first_on_paths(monkeypatch, tmp_path):
    root = tmp_path / "ws"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_runner_paths.py").write_text(
        "import os, sys\n"
        "def test_paths():\n"
        "    root = os.getcwd()\n"
        "    assert sys.path[0] == root\n"
        "    assert os.environ['PYTHONPATH'].split(os.pathsep)[0] == root\n")
    assert _run_in(monkeypatch, root, ["tests/test_runner_paths.py"]) == 0


def test_main_rejects_missing_file(monkeypatch, tmp_path, capsys):
    root = tmp_path / "ws"
    root.mkdir()
    assert _run_in(monkeypatch, root, ["tests/test_absent.py"]) == 2
    assert "not in the runfiles" in capsys.readouterr().err


def test_main_without_file_prints_usage(capsys):
    assert pytest_runner.main(["pytest_runner.py"]) == 2
    assert "usage" in capsys.readouterr().err
