"""What the programs share: error reporting, the absl entry point, and
running one of the repository's experiments/*.py programs as `__main__`."""

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


def report_error(message, status=1, prefix="error: "):
    """Prints one line to stderr (no traceback) and returns the exit status."""
    print(f"{prefix}{message}", file=sys.stderr, flush=True)
    return status


def run_absl_program(define_flags, main):
    """A console-script entry point: defines the program's flags, then runs
    `main` under absl (which parses them and exits with its status)."""
    from absl import app  # pylint: disable=import-outside-toplevel
    define_flags()
    app.run(main)
