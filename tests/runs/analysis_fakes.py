"""A fake sweep directory for the analysis tests, with hand-computed values
(see tests/runs/test_analysis.py)."""

import csv
import json
import os

import numpy as np

BREAKOUT = (1.7, 30.5)
PONG = (-20.7, 14.6)


def raw(reference, hns):
    random, human = reference
    return random + hns * (human - random)


# (condition, game, seed) -> raw training returns of iterations 0 and 1.
RETURNS = {
    ("A", "Breakout", 0): [raw(BREAKOUT, 0.0), raw(BREAKOUT, 1.0)],
    ("A", "Breakout", 1): [raw(BREAKOUT, 0.0), raw(BREAKOUT, 0.5)],
    ("A", "Pong", 0): [raw(PONG, 0.0), raw(PONG, 0.2)],
    ("A", "Pong", 1): [raw(PONG, 0.6), float("nan")],
    ("A", "AirRaid", 0): [500.0, 700.0],
    ("A", "AirRaid", 1): [600.0, 900.0],
    ("B", "Breakout", 0): [raw(BREAKOUT, 0.0), raw(BREAKOUT, 0.1)],
    ("B", "Breakout", 1): [raw(BREAKOUT, 0.0), raw(BREAKOUT, 0.3)],
    ("B", "Pong", 0): [raw(PONG, 0.1), raw(PONG, 0.4)],
    ("B", "AirRaid", 0): [400.0, 450.0],
    ("B", "AirRaid", 1): [500.0, 550.0],
}
MISSING = ("B", "Pong", 1)


def write_run(root, cell, returns, steps_per_iteration=100):
    run_dir = os.path.join(root, cell[0], cell[1], f"seed_{cell[2]}")
    os.makedirs(os.path.join(run_dir, "policy"))
    with open(os.path.join(run_dir, "policy", "saved_model.pb"), "wb") as handle:
        handle.write(b"fake")
    with open(os.path.join(run_dir, "metrics.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["iteration", "agent_steps", "train_episode_return",
                         "train_steps_per_second"])
        for i, value in enumerate(returns):
            writer.writerow([i, (i + 1) * steps_per_iteration,
                             "nan" if np.isnan(value) else value, 50.0])



def make_sweep(root):
    """Writes the fake sweep under `root` (with sweep.json); returns root."""
    plan = {"runs": {}}
    for cell in list(RETURNS) + [MISSING]:
        key = f"{cell[0]}/{cell[1]}/seed_{cell[2]}"
        plan["runs"][key] = {"condition": cell[0], "game": cell[1], "seed": cell[2],
                             "num_iterations": 2, "steps_per_iteration": 100}
        if cell in RETURNS:
            write_run(root, cell, RETURNS[cell])
    with open(os.path.join(root, "sweep.json"), "w") as handle:
        json.dump(plan, handle)
    return root
