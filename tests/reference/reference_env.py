"""Runs code under the official dopamine-rl 4.1.2 in its own virtual environment.

The reference tier (`tests/reference/`) compares tf_softmoe with the code the
papers were run with (`dopamine/labs/moes`, JAX/Flax). That code cannot share a
process with TensorFlow 2.21, so each check sends numpy arrays to a script run
by the reference environment's python and reads numpy arrays back.

The environment is made by `python -m benchmarks.peers.setup_envs --peers jax`
(pins and package defects documented there). Its python is found through
`TFSM_REFERENCE_PYTHON`, else under `setup_envs.DEFAULT_ROOT`. When it is
missing the tier is skipped with a message saying how to make it; with
`TFSM_REQUIRE_REFERENCE=1` (set by `.ci/run`) a missing environment fails.
"""

import os
import subprocess
import tempfile
import textwrap

import numpy as np

from benchmarks.peers import setup_envs

PYTHON_ENV = "TFSM_REFERENCE_PYTHON"
REQUIRE_ENV = "TFSM_REQUIRE_REFERENCE"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOW_TO_MAKE = ("make it with `python -m benchmarks.peers.setup_envs --peers jax` "
               f"or point {PYTHON_ENV} at its python")

# Runs inside the reference python: loads the inputs, executes the check's
# script with `inputs` (dict of arrays) in scope, saves its `outputs`.
_DRIVER = textwrap.dedent("""
    import os, sys
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    _in, _out, _script = sys.argv[1:4]
    with np.load(_in, allow_pickle=False) as _data:
        inputs = {k: _data[k] for k in _data.files}
    outputs = {}
    with open(_script) as _f:
        exec(compile(_f.read(), _script, "exec"))
    np.savez(_out, **{k: np.asarray(v) for k, v in outputs.items()})
""")


def reference_python():
    """The reference environment's python, or None when it is not there."""
    python = os.environ.get(PYTHON_ENV) or setup_envs.python_of(
        setup_envs.DEFAULT_ROOT, "jax")
    return python if os.path.exists(python) else None


def required():
    """True when a missing reference environment must fail the tier."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0", "false", "False")


def run(script, timeout=600, **arrays):
    """Runs `script` in the reference environment; returns its `outputs`.

    Args:
      script: Python source. It sees `inputs` (the arrays passed here, by
        name) and fills the dict `outputs` with arrays. The repository root is
        the working directory and on `sys.path`.
      timeout: seconds before the run is killed.
      **arrays: numpy arrays (or values numpy can store without pickling).

    Returns:
      dict name -> numpy array.

    Raises:
      RuntimeError: the reference environment is missing, or the script
        failed (the message holds the tail of its stderr).
    """
    python = reference_python()
    if python is None:
        raise RuntimeError(f"The reference environment is missing; {HOW_TO_MAKE}.")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: os.path.join(tmp, name) for name in
                 ("inputs.npz", "outputs.npz", "script.py", "driver.py")}
        np.savez(paths["inputs.npz"], **{k: np.asarray(v) for k, v in arrays.items()})
        with open(paths["script.py"], "w") as f:
            f.write(textwrap.dedent(script))
        with open(paths["driver.py"], "w") as f:
            f.write(_DRIVER)
        env = dict(os.environ, PYTHONPATH=REPO)
        env.pop("TF_USE_LEGACY_KERAS", None)
        done = subprocess.run(
            [python, paths["driver.py"], paths["inputs.npz"], paths["outputs.npz"],
             paths["script.py"]],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
            check=False)
        if done.returncode:
            raise RuntimeError(f"The reference script failed (exit {done.returncode}):\n"
                               f"{done.stderr[-4000:]}")
        with np.load(paths["outputs.npz"], allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
