"""`tfsm-evaluate` as a script: python experiments/evaluate.py --help (the
program is tf_softmoe/cli/evaluate.py)."""

from tf_softmoe.cli import evaluate

if __name__ == "__main__":
    evaluate.run()
