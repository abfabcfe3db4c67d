"""Console-script entry point `tfsm-analyze`: experiments/analyze.py."""

from tf_softmoe.cli import _scripts


def run():
    _scripts.run_experiment_script("analyze")


if __name__ == "__main__":
    run()
