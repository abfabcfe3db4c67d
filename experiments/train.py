"""`tfsm-train` as a script: python experiments/train.py --help (the program
is tf_softmoe/cli/train.py)."""

from tf_softmoe.cli import train

if __name__ == "__main__":
    train.run()
