"""Checks that every pytest file in tests/ is the source of a Bazel test target.

The top-level BUILD makes a `py_test` per file from a glob, but a glob stops at
package boundaries (a new tests/<dir>/BUILD hides its files from it) and only
matches `test_*.py`, while pytest also collects `*_test.py`. This script asks
Bazel which files its test targets run and lists the test files that none
does.

Usage (from the repository root, with `bazel` on PATH):
  python tools/check_bazel_targets.py [--bazel bazel] [--tests-dir tests]

Exit status: 0 when every test file has a target, 1 when some lack one (they
are printed), 2 when `bazel query` fails.
"""

import argparse
import fnmatch
import os
import subprocess
import sys

# pytest's default `python_files`: the names it collects tests from.
TEST_FILE_PATTERNS = ("test_*.py", "*_test.py")

# Source files of every test target (test_suites expanded).
BAZEL_QUERY = "labels(srcs, tests(//...))"


def label_to_path(label):
    """Maps a main-repository source file label to its path in the repository.

    Args:
      label: a label as `bazel query --output=label` prints it, such as
        "//:tests/layers/test_x.py", "//tests/layers:test_x.py" or
        "@//tests:test_x.py".

    Returns:
      The repository-relative path ("tests/layers/test_x.py"), or None for a
      label of another repository.

    Raises:
      ValueError: if `label` is not an absolute label.
    """
    if label.startswith("@//"):
        label = label[1:]
    if label.startswith("@"):
        return None
    if not label.startswith("//"):
        raise ValueError(
            f"{label!r} is not an absolute Bazel label; expected '//pkg:file'.")
    package, sep, name = label[2:].partition(":")
    if not sep:
        name = package.rsplit("/", 1)[-1]
    return f"{package}/{name}" if package else name


def find_test_files(tests_dir, root="."):
    """Lists the files under `tests_dir` that pytest would collect tests from.

    Args:
      tests_dir: directory to search, relative to `root`.
      root: the repository root.

    Returns:
      Sorted repository-relative paths with "/" separators.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, tests_dir)):
        dirnames[:] = [d for d in dirnames
                       if not d.startswith(".") and d != "__pycache__"]
        for filename in filenames:
            if any(fnmatch.fnmatch(filename, p) for p in TEST_FILE_PATTERNS):
                path = os.path.relpath(os.path.join(dirpath, filename), root)
                found.append(path.replace(os.sep, "/"))
    return sorted(found)


def missing_test_targets(source_labels, test_files):
    """Returns the test files that no Bazel test target has as a source.

    Args:
      source_labels: labels of the source files of all test targets.
      test_files: repository-relative paths of the test files on disk.

    Returns:
      The sorted subset of `test_files` absent from `source_labels`.
    """
    covered = {label_to_path(label) for label in source_labels}
    return sorted(set(test_files) - covered)


def query_test_sources(bazel):
    """Runs `bazel query` for the source files of every test target.

    Args:
      bazel: the Bazel command.

    Returns:
      The labels Bazel printed.

    Raises:
      subprocess.CalledProcessError: if the query fails.
    """
    result = subprocess.run(
        [bazel, "query", "--noshow_progress", BAZEL_QUERY, "--output=label"],
        check=True, stdout=subprocess.PIPE, text=True)
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def main(argv=None):
    """Compares Bazel's test targets with the test files; returns the status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bazel", default="bazel", help="Bazel command.")
    parser.add_argument("--tests-dir", default="tests",
                        help="Directory of test files, relative to the root.")
    args = parser.parse_args(argv)

    try:
        labels = query_test_sources(args.bazel)
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"check_bazel_targets: `{args.bazel} query '{BAZEL_QUERY}'` "
              f"failed: {error}", file=sys.stderr)
        return 2
    test_files = find_test_files(args.tests_dir)
    missing = missing_test_targets(labels, test_files)
    if missing:
        print(f"{len(missing)} of {len(test_files)} test files have no Bazel "
              "test target:", file=sys.stderr)
        for path in missing:
            print("  " + path, file=sys.stderr)
        print("Name them `test_*.py` outside any tests/**/BUILD package, or "
              "add a pytest_test for them (tools/pytest.bzl).", file=sys.stderr)
        return 1
    print(f"check_bazel_targets: all {len(test_files)} test files have a Bazel "
          "test target.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
