"""A finished tiny Catch run, and Python processes that start fresh.

Shared by the fresh-process loading tests and the test of
docs/use_a_trained_agent.md. A fresh process imports only what its code
imports: nothing a test process has already registered carries over.
"""

import os
import subprocess
import sys

from tf_softmoe.train import config as config_lib
from tf_softmoe.train import experiment

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Placed first in a fresh process, this makes `import tf_softmoe` fail (the
# package is also installed in the venv, so leaving it off sys.path is not
# enough): code that runs after it cannot use tf_softmoe, directly or through
# anything it loads.
BLOCK_TF_SOFTMOE = """
import sys
class _NoTfSoftmoe:
    def find_spec(self, name, path=None, target=None):
        if name == "tf_softmoe" or name.startswith("tf_softmoe."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None
sys.meta_path.insert(0, _NoTfSoftmoe())
try:
    import tf_softmoe
except ModuleNotFoundError:
    pass
else:
    raise AssertionError("tf_softmoe is still importable")
"""


def catch_run(root):
    """Trains Rainbow-SoftMoE (Nature encoder, 2 experts of 8 units) for 60
    Catch steps in `root` and exports it; returns the finished Experiment."""
    config = config_lib.ExperimentConfig.preset(
        "rainbow", game="catch", env_overrides={"rows": 6, "columns": 3,
                                                "observation_shape": [12, 6, 1]},
        min_replay_history=40, update_period=2, target_update_period=20,
        epsilon_decay_steps=100, replay_capacity=1000, batch_size=8, n_step=1,
        v_min=-1.0, v_max=1.0, num_atoms=11,
        # Deterministic evaluation outputs to compare across processes
        # (by default the experts stay noisy in evaluation).
        expert_noise_in_eval=False,
        encoder="nature", penultimate="softmoe", num_experts=2, hidden_units=8,
        num_iterations=1, steps_per_iteration=60, diagnostics_period=5,
        jit_compile="false", policy_jit_compile="false")
    run = experiment.Experiment(config, root, handle_signals=False)
    run.run()
    return run


def fresh_python(code, cwd, with_repo=True, timeout=300):
    """Runs `code` in a new interpreter from `cwd`; returns the CompletedProcess.

    Args:
      code: the program.
      cwd: its working directory (not the repository, so that the repository
        is not on its path by accident).
      with_repo: put this checkout of tf_softmoe first on PYTHONPATH (else
        PYTHONPATH is empty). TF_USE_LEGACY_KERAS is unset either way.
      timeout: seconds.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=REPO if with_repo else "")
    # Code that imports tf_softmoe relies on it to select Keras 2, as a
    # user's does; code without it sets the variable itself (as the doc says).
    env.pop("TF_USE_LEGACY_KERAS", None)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
