"""tf_softmoe.runs.backends.local: real child processes."""

import os
import sys
import time

from tests.runs.sweep_fakes import plan
from tf_softmoe.runs import conditions
from tf_softmoe.runs.backends import local


def test_launch_subprocess_logs_runs_in_the_repo_and_detaches(tmp_path, monkeypatch):
    script = tmp_path / "fake_train.py"
    script.write_text("import os, sys\n"
                      "print('args', sys.argv[1:], os.getcwd(), os.getsid(0))\n")
    monkeypatch.setattr(conditions, "TRAIN_SCRIPT", str(script))
    unit = plan(tmp_path, seeds=(0,), games=("Pong",))[0]
    process = local.launch_subprocess(unit, unit.log_path)
    assert process.wait(timeout=60) == 0
    with open(unit.log_path) as handle:
        text = handle.read()
    assert "sweep starts:" in text and "'--seed=0'" in text
    assert sys.executable in text and conditions.REPO_ROOT in text
    # The flag file is given relative to the repository root, the child's cwd.
    assert "'--flagfile=experiments/configs/rainbow_nature_flatten_x1.flags'" in text
    child_session = int(text.strip().rsplit(" ", 1)[1])
    assert child_session != os.getsid(0)


def test_close_stops_the_children_still_running(tmp_path, monkeypatch):
    script = tmp_path / "fake_train.py"
    script.write_text("import signal, sys, time\n"
                      "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\n"
                      "print('ready', flush=True)\n"
                      "time.sleep(60)\n")
    monkeypatch.setattr(conditions, "TRAIN_SCRIPT", str(script))
    unit = plan(tmp_path, seeds=(0,), games=("Pong",))[0]
    backend = local.LocalBackend(workers=1)
    handle = backend.submit(unit)
    deadline = time.time() + 30
    while time.time() < deadline:
        with open(unit.log_path) as log:
            if "ready" in log.read():
                break
        time.sleep(0.05)
    assert backend.poll([handle], timeout=0.01) == []
    backend.close()
    assert handle.ref.poll() == 7
