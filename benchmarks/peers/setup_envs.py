"""Creates the peers' virtual environments (outside the repository).

  <root>/jax    dopamine-rl 4.1.2 with its dependencies, plus the pins that
                make its `dopamine/labs/moes` import on Python 3.11:
                  * jax/jaxlib 0.4.35, flax 0.10.2, optax 0.2.4, chex 0.1.87,
                    orbax-checkpoint 0.10.2 (contemporary with 4.1.2): with
                    the newest jax, tensorflow-probability 0.25's JAX
                    substrate (imported by dopamine.jax.networks) fails with
                    "module 'jax.interpreters.xla' has no attribute
                    'pytype_aval_mappings'";
                  * baselines 0.1.5 without its dependencies:
                    dopamine/discrete_domains/atari_lib.py imports
                    `baselines.common.atari_wrappers` but dopamine-rl does
                    not declare it (ModuleNotFoundError: No module named
                    'baselines').
  <root>/torch  torch 2.13.0 (CPU wheel) and NumPy.

Both are made with `<this python> -m venv` and PyPI through pip; tf_softmoe's own
environment is not touched. A marker file records what was installed so a
second call returns at once.

Usage: python -m benchmarks.peers.setup_envs [--root /work/peer_envs]
           [--peers jax,torch]
"""

import argparse
import json
import os
import subprocess
import sys

DEFAULT_ROOT = "/work/peer_envs"

REQUIREMENTS = {
    "jax": {
        "install": [
            ["dopamine-rl==4.1.2", "jax[cpu]==0.4.35", "jaxlib==0.4.35",
             "flax==0.10.2", "optax==0.2.4", "chex==0.1.87",
             "orbax-checkpoint==0.10.2"],
            ["--no-deps", "baselines==0.1.5"],
        ],
        "check": ("from dopamine.labs.moes.agents import full_rainbow_moe_agent, "
                  "dqn_moe_agent; import jax; print(jax.__version__)"),
    },
    "torch": {
        "install": [["torch==2.13.0", "numpy"]],
        "check": "import torch; print(torch.__version__)",
    },
}


def python_of(root, peer):
    """The peer venv's python executable."""
    return os.path.join(root, peer, "bin", "python")


def _marker(root, peer):
    return os.path.join(root, peer, ".tf_softmoe_peer.json")


def is_ready(root, peer):
    """True when the venv exists with the current requirements installed."""
    try:
        with open(_marker(root, peer)) as f:
            return json.load(f) == REQUIREMENTS[peer]["install"]
    except (OSError, ValueError):
        return False


def ensure(root, peer, log=print):
    """Creates and fills `<root>/<peer>` unless it is ready; returns its python.

    Raises:
      RuntimeError: pip or the import check failed (the message holds the
        command and the tail of its output).
    """
    if peer not in REQUIREMENTS:
        raise ValueError(f"Unknown peer {peer!r}; choose from {sorted(REQUIREMENTS)}.")
    python = python_of(root, peer)
    if is_ready(root, peer):
        return python
    env_dir = os.path.join(root, peer)
    os.makedirs(root, exist_ok=True)
    if not os.path.exists(python):
        log(f"creating {env_dir}")
        # The interpreter running this (3.11 here and in CI), not whatever
        # `python3` is first on PATH.
        subprocess.run([sys.executable, "-m", "venv", env_dir], check=True)
    spec = REQUIREMENTS[peer]
    for args in spec["install"]:
        command = [python, "-m", "pip", "install", *args]
        log("running " + " ".join(command))
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}"
                               f"\n{done.stderr[-3000:]}")
    done = subprocess.run([python, "-c", spec["check"]], capture_output=True,
                          text=True)
    if done.returncode:
        raise RuntimeError(f"{peer} venv installed but its import check failed:\n"
                           f"{done.stderr[-3000:]}")
    with open(_marker(root, peer), "w") as f:
        json.dump(spec["install"], f)
    log(f"{peer} ready: {done.stdout.strip().splitlines()[-1]}")
    return python


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=DEFAULT_ROOT)
    parser.add_argument("--peers", default="jax,torch")
    args = parser.parse_args(argv)
    for peer in filter(None, args.peers.split(",")):
        ensure(args.root, peer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
