"""Console-script entry point `tfsm-sweep`: experiments/sweep.py."""

from tf_softmoe.cli import _scripts


def run():
    _scripts.run_experiment_script("sweep")


if __name__ == "__main__":
    run()
