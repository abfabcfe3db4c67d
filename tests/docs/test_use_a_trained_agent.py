"""docs/use_a_trained_agent.md runs as written on a real (tiny) run.

Every python block runs in a fresh process on the run's exports; a block that
does not import tf_softmoe runs where tf_softmoe cannot be imported. The bash
block's commands run as they are, with this interpreter for `.venv/bin/python`.
"""

import os
import re
import subprocess
import sys

import pytest

from tests.fresh_process import tiny_run

DOC = os.path.join(tiny_run.REPO, "docs", "use_a_trained_agent.md")
RUN_DIR = "runs/quickstart"


def blocks(language):
    with open(DOC) as f:
        return re.findall(rf"```{language}\n(.*?)```", f.read(), re.S)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("doc") / "run")
    tiny_run.catch_run(root)
    return root


def test_the_doc_links_from_the_readme_and_has_its_sections():
    with open(os.path.join(tiny_run.REPO, "README.md")) as f:
        assert "docs/use_a_trained_agent.md" in f.read()
    assert len(blocks("python")) == 3 and len(blocks("bash")) == 1


@pytest.mark.parametrize("index,expected", [
    (0, r"Q-values \(2, 3\) greedy actions \[\d \d\]"),
    (1, r"actions \[\d \d\] after \d+ updates"),
    (2, r"PerConvTokenizer SoftMoE\nexpert gates \[\s*([\d.]+)\s+([\d.]+)\s*\]"),
], ids=["q_values", "policy", "reuse"])
def test_python_block_runs_on_the_run(run_dir, tmp_path, index, expected):
    code = blocks("python")[index]
    assert f'"{RUN_DIR}"' in code
    code = code.replace(f'"{RUN_DIR}"', repr(run_dir))
    uses_package = "import tf_softmoe" in code
    if not uses_package:
        code = tiny_run.BLOCK_TF_SOFTMOE + code
    result = tiny_run.fresh_python(code, cwd=str(tmp_path), with_repo=uses_package)
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(expected, result.stdout)
    assert match, result.stdout
    if match.groups():  # the two experts' gates
        assert abs(sum(float(g) for g in match.groups()) - 1) < 1e-5


def test_evaluate_commands_run_on_the_run(run_dir):
    commands = [line for line in blocks("bash")[0].splitlines() if line.strip()]
    assert [c.split()[:2] for c in commands] == [
        [".venv/bin/python", "experiments/evaluate.py"]] * 2
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=tiny_run.REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for command in commands:
        args = command.replace(RUN_DIR, run_dir).split()
        result = subprocess.run([sys.executable] + args[1:], cwd=tiny_run.REPO, env=env,
                                capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "catch: 3 episodes from" in result.stdout
        assert "mean raw return" in result.stdout
        # Each episode is printed as it ends, before the summary.
        lines = result.stdout.splitlines()
        episodes = [i for i, line in enumerate(lines)
                    if re.fullmatch(r"  episode \d: return -?\d+, 5 steps", line)]
        assert [lines[i].split(":")[0] for i in episodes] == [
            f"  episode {k}" for k in range(3)]
        assert episodes[-1] < next(i for i, line in enumerate(lines)
                                   if line.startswith("catch: 3 episodes from"))
