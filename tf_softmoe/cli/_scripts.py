"""Runs one of the repository's experiments/*.py programs as `__main__`."""

import os
import runpy
import sys

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_experiment_script(name):
    """Runs experiments/`name`.py of the source tree this package is
    installed from (an editable install: `pip install -e .`)."""
    path = os.path.join(REPOSITORY, "experiments", f"{name}.py")
    if not os.path.isfile(path):
        print(f"error: {path} does not exist; tfsm-{name} runs the repository's "
              f"experiments/{name}.py, so install the package editable (pip install "
              "-e .) from a checkout of the repository.", file=sys.stderr)
        sys.exit(1)
    sys.argv[0] = path
    runpy.run_path(path, run_name="__main__")
