"""Runs one pytest file as a Bazel `py_test` (the main of `pytest_test`).

Bazel starts this script inside the test's runfiles tree, which holds only the
files the target declares (sources, `data`, `deps`). The script makes that
tree look like the repository root to pytest:

  * the workspace root inside the runfiles goes first on `sys.path` (and on
    `PYTHONPATH` for subprocesses), so `import tf_softmoe` resolves to the
    declared sources rather than to an installed copy;
  * pytest runs from that root with the same options as the README's command
    (`setup.cfg`'s `[tool:pytest]`, `--import-mode=importlib`), writes its
    temporary files under `$TEST_TMPDIR` and its JUnit report to the file
    Bazel asks for;
  * the exit status is pytest's, so a failure, an error, or a file that
    collects no tests (pytest's status 5) fails the Bazel target.

Usage (what `tools/pytest.bzl` generates):
  pytest_runner.py tests/layers/test_softmoe.py [extra pytest args...]
"""

import os
import sys

import pytest

# pytest's status when it collected nothing; a test target without tests
# always means a mistake (wrong file, everything skipped at import time).
_NO_TESTS_COLLECTED = 5


def workspace_root():
    """Returns the directory that stands for the repository root.

    Under `bazel test`, that is `$TEST_SRCDIR/$TEST_WORKSPACE`; under
    `bazel run`, `$RUNFILES_DIR/$TEST_WORKSPACE` or the directory above
    `tools/` (this file's location inside the runfiles tree).

    Returns:
      An absolute path (symlinks are kept: resolving them would leave the
      runfiles tree for the source tree).
    """
    runfiles = os.environ.get("TEST_SRCDIR") or os.environ.get("RUNFILES_DIR")
    workspace = os.environ.get("TEST_WORKSPACE")
    if runfiles and workspace:
        candidate = os.path.join(runfiles, workspace)
        if os.path.isdir(candidate):
            return os.path.abspath(candidate)
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_args(test_file, root, extra_args, environ):
    """Builds pytest's argument list for one test file.

    Args:
      test_file: the test file, relative to the workspace root.
      root: the workspace root inside the runfiles tree.
      extra_args: further pytest arguments given to the target.
      environ: the environment Bazel gave the test.

    Returns:
      The argument list for `pytest.main`.
    """
    args = [
        "-q",
        "--rootdir=" + root,
        "--import-mode=importlib",
        # The runfiles tree is Bazel's; pytest's cache does not belong there.
        "-p", "no:cacheprovider",
    ]
    test_tmpdir = environ.get("TEST_TMPDIR")
    if test_tmpdir:
        args.append("--basetemp=" + os.path.join(test_tmpdir, "pytest"))
    xml_output = environ.get("XML_OUTPUT_FILE")
    if xml_output:
        args.append("--junitxml=" + xml_output)
    return args + list(extra_args) + [test_file]


def main(argv):
    """Runs pytest on the file named in `argv[1]`; returns pytest's status."""
    if len(argv) < 2:
        print("usage: pytest_runner.py TEST_FILE [PYTEST_ARGS...]; TEST_FILE is "
              "relative to the repository root, e.g. tests/layers/test_x.py",
              file=sys.stderr)
        return 2
    test_file = argv[1]
    root = workspace_root()
    if not os.path.isfile(os.path.join(root, test_file)):
        print(f"pytest_runner: {test_file} is not in the runfiles under {root}; "
              "pass it as `src` of pytest_test (tools/pytest.bzl).",
              file=sys.stderr)
        return 2

    os.chdir(root)
    # Python put this script's real directory (tools/ in the source tree, as
    # runfiles are symlinks) first on sys.path; the test must not see it.
    if sys.path and sys.path[0] == os.path.dirname(os.path.realpath(__file__)):
        del sys.path[0]
    sys.path.insert(0, root)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p)
    # Bazel gives tests no HOME; TensorFlow, Keras and matplotlib want one.
    if not os.environ.get("HOME") and os.environ.get("TEST_TMPDIR"):
        os.environ["HOME"] = os.environ["TEST_TMPDIR"]

    status = int(pytest.main(pytest_args(test_file, root, argv[2:], os.environ)))
    if status == _NO_TESTS_COLLECTED:
        print(f"pytest_runner: {test_file} collected no tests; a test target "
              "must run at least one test.", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
