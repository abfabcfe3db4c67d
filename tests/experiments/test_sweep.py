"""experiments/sweep.py: the command line (dry runs, a figure, a sweep of
fake runs, bad input). The library is tested in tests/runs/."""

import os
import subprocess
import sys

import pytest

from experiments import sweep
from tests.runs.sweep_fakes import CONDITIONS, SHORT, FakeLauncher
from tf_softmoe.runs.backends import local

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_dry_run_prints_plan_and_estimate(tmp_path, capsys):
    code = sweep.main([f"--sweep_root={tmp_path}", f"--conditions={','.join(CONDITIONS)}",
                       "--games=Pong", "--seeds=0,1", "--workers=1", "--dry_run",
                       "--steps_per_second=10", "--startup_seconds=60", "--"]
                      + list(SHORT))
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 conditions x 1 games x 2 seeds = 4 runs, 1 worker(s)" in printed
    assert "800 agent steps (3,200 frames)" in printed
    # 4 runs x (200 steps / 10 per s + 60 s) = 320 s.
    assert "5m20s of single-worker time" in printed
    assert ("python experiments/train.py --flagfile=experiments/configs/"
            "rainbow_nature_flatten_x1.flags --game=Pong --seed=0") in printed
    assert not os.listdir(tmp_path)  # a dry run writes nothing


def test_figure_drives_the_plan(tmp_path, capsys):
    code = sweep.main([f"--sweep_root={tmp_path}", "--figure=fig01_experts_and_scale",
                       "--games=Pong", "--seeds=0", "--workers=1", "--dry_run"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "6 conditions x 1 games x 1 seeds = 6 runs" in printed
    assert "Figure 1" in printed
    # 200 iterations x 250 000 steps per run.
    assert f"{6 * 200 * 250_000:,} agent steps" in printed


def test_sweep_runs_skips_and_reports(tmp_path, capsys, monkeypatch):
    launcher = FakeLauncher(fail={str(tmp_path / CONDITIONS[1] / "Pong" / "seed_0")})
    original = local.LocalBackend.__init__

    def with_fake_launcher(self, workers=1, python=sys.executable, launch=None):
        original(self, workers=workers, python=python, launch=launcher)

    monkeypatch.setattr(local.LocalBackend, "__init__", with_fake_launcher)
    args = [f"--sweep_root={tmp_path}", f"--conditions={','.join(CONDITIONS)}",
            "--games=Pong", "--seeds=0", "--workers=2", "--"] + list(SHORT)
    assert sweep.main(args) == 1
    printed = capsys.readouterr().out
    assert "Sweep: 1/2 runs finished" in printed
    assert f"unfinished: {tmp_path / CONDITIONS[1] / 'Pong' / 'seed_0'}" in printed
    assert os.path.isfile(tmp_path / "sweep.json")
    launcher.fail.clear()
    assert sweep.main(args) == 0
    assert "Skipping 1 finished run(s)." in capsys.readouterr().out
    assert len(launcher.launched) == 3


@pytest.mark.parametrize("args, message", [
    (["--conditions=rainbow_nature_flatten_x"], "Did you mean"),
    (["--conditions=rainbow_nature_flatten_x1", "--seeds=2-1"], "backwards"),
    (["--conditions=rainbow_nature_flatten_x1", "--workers=0"], "--workers must be"),
    (["--conditions=rainbow_nature_flatten_x1", "--gpus_per_run=1"],
     "applies only to --backend=ray"),
    (["--conditions=rainbow_nature_flatten_x1", "--backend=ray", "--max_retries=-1"],
     "--max_retries must be >= 0"),
    (["--conditions=rainbow_nature_flatten_x1", "--", "--seed=3"], "not allowed"),
    ([], "give --figure=NAME or --conditions"),
])
def test_bad_input_is_one_error_message(tmp_path, args, message):
    with pytest.raises(SystemExit, match=message):
        sweep.main([f"--sweep_root={tmp_path}", "--games=Pong", "--dry_run"] + args)


def test_runs_by_its_path_without_sys_path_help(tmp_path):
    # As a user runs it: `python experiments/sweep.py` with the package
    # installed (here: on PYTHONPATH), from another directory.
    env = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "experiments", "sweep.py"),
         f"--sweep_root={tmp_path / 'sweep'}", f"--conditions={CONDITIONS[0]}",
         "--games=Pong", "--seeds=0", "--workers=1", "--dry_run", "--"] + list(SHORT),
        capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=300,
        check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 conditions x 1 games x 1 seeds = 1 runs" in result.stdout
