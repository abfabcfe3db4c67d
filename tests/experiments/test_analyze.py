"""experiments/analyze.py: the command line on a fake sweep directory
(tests/runs/analysis_fakes.py); the tables are tested in
tests/runs/test_analysis.py."""

import os
import subprocess
import sys

import pytest

from experiments import analyze
from tests.runs.analysis_fakes import make_sweep

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(name="sweep_root")
def fixture_sweep_root(tmp_path):
    return make_sweep(str(tmp_path / "sweep"))


def test_command_line(sweep_root, tmp_path, capsys):
    out_dir = str(tmp_path / "cli")
    assert analyze.main([f"--sweep_root={sweep_root}", f"--out_dir={out_dir}",
                         "--conditions=B,A", "--reps=200", "--backend=numpy"]) == 0
    printed = capsys.readouterr().out
    assert "not counted: B / Pong / seed 1: missing" in printed
    assert os.path.isfile(os.path.join(out_dir, "report.md"))




def test_bad_arguments_exit_with_one_message(sweep_root, capsys):
    with pytest.raises(SystemExit, match="error: baseline 'C'"):
        analyze.main([f"--sweep_root={sweep_root}", "--baseline=C", "--backend=numpy"])
    with pytest.raises(SystemExit, match="error: No figure 'nope'"):
        analyze.main([f"--sweep_root={sweep_root}", "--figure=nope"])


def test_runs_by_its_path_without_sys_path_help(sweep_root, tmp_path):
    # As a user runs it: `python experiments/analyze.py` with the package
    # installed (here: on PYTHONPATH), from another directory.
    env = dict(os.environ, PYTHONPATH=REPO)
    out_dir = str(tmp_path / "by_path")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "experiments", "analyze.py"),
         f"--sweep_root={sweep_root}", f"--out_dir={out_dir}", "--reps=50",
         "--backend=numpy", "--conditions=A,B,Z"],
        capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=300,
        check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Note: no runs of Z" in result.stdout
    assert os.path.isfile(os.path.join(out_dir, "report.md"))
