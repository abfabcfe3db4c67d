"""The README's promises: its layer example runs, its commands match CI."""

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme():
    with open(os.path.join(REPO, "README.md")) as f:
        return f.read()


def test_layer_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", readme(), re.S)
    assert blocks, "README.md has no python example"
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # pylint: disable=exec-used
    out = namespace["out"]
    assert out["q"].shape == (2, 6)
    assert abs(float(out["expert_gate"].numpy().sum()) - 1.0) < 1e-5


def test_first_two_commands_set_up_run_and_test():
    block = re.findall(r"```bash\n(.*?)```", readme(), re.S)[0]
    commands = [line for line in block.splitlines() if line.strip()]
    assert commands[0].startswith("python3.11 -m venv .venv")
    assert "experiments/train.py" in commands[0]
    assert "--penultimate=softmoe" in commands[0] and "--num_experts=4" in commands[0]
    with open(os.path.join(REPO, ".ci", "run")) as f:
        ci = f.read()
    test_command = re.search(r'TEST_COMMAND="([^"]+)"', ci).group(1)
    assert commands[1] == test_command
