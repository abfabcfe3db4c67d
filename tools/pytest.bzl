"""Bazel macros that turn pytest files into `py_test` targets.

Each test file becomes one `py_test` whose main is tools/pytest_runner.py; the
runner runs pytest on that file alone inside the target's runfiles, so a test
only sees the code and data its target declares.
"""

load("@rules_python//python:defs.bzl", "py_test")

_RUNNER = "//:tools/pytest_runner.py"

def pytest_test(name, src, deps = [], data = [], args = [], size = "medium", **kwargs):
    """One `py_test` that runs pytest on a single file.

    Args:
      name: target name; `pytest_tests` uses the file's path without ".py".
      src: the test file (a label in the calling package).
      deps: `py_library` targets the test imports.
      data: other files the test reads at run time (fixtures).
      args: extra pytest arguments, placed before the file.
      size: Bazel test size; it sets the timeout (medium: 300 s).
      **kwargs: passed on to `py_test` (tags, timeout, flaky, ...).
    """
    py_test(
        name = name,
        srcs = [_RUNNER, src],
        main = _RUNNER,
        args = ["$(rootpath %s)" % src] + args,
        deps = deps,
        data = data,
        python_version = "PY3",
        srcs_version = "PY3",
        size = size,
        **kwargs
    )

def pytest_tests(name, srcs, deps = [], data = [], deps_by_dir = {}, size = "medium", size_by_dir = {}, **kwargs):
    """A `pytest_test` per file in `srcs`, plus `test_suite`s that group them.

    The suite `name` holds every test; a suite "<dir>/all" holds the tests of
    each directory (e.g. //:tests/layers/all), not counting subdirectories.

    Args:
      name: name of the `test_suite` that holds every generated test.
      srcs: test files, e.g. `glob(["tests/**/test_*.py"])`.
      deps: `py_library` targets every test imports.
      data: files every test reads.
      deps_by_dir: extra deps for the test files under a directory, as
        {"tests/experiments/": [":experiments"]}; every matching prefix adds.
      size: Bazel test size (it sets the timeout) of the tests.
      size_by_dir: another size for the test files under a directory, as
        {"tests/train/": "large"}; the longest matching prefix wins.
      **kwargs: passed on to every `py_test`.
    """
    tests = []
    tests_by_dir = {}
    for src in srcs:
        if not src.endswith(".py"):
            fail("pytest_tests: %s is not a .py file" % src)
        test_name = src[:-len(".py")]
        extra_deps = []
        for prefix, dir_deps in deps_by_dir.items():
            if src.startswith(prefix):
                extra_deps += [d for d in dir_deps if d not in extra_deps]
        test_size = size
        size_prefix = ""
        for prefix, dir_size in size_by_dir.items():
            if src.startswith(prefix) and len(prefix) > len(size_prefix):
                test_size = dir_size
                size_prefix = prefix
        pytest_test(
            name = test_name,
            src = src,
            deps = deps + extra_deps,
            data = data,
            size = test_size,
            **kwargs
        )
        tests.append(":" + test_name)
        directory = src.rpartition("/")[0]
        if directory:
            tests_by_dir.setdefault(directory, []).append(":" + test_name)
    native.test_suite(name = name, tests = tests)
    for directory, dir_tests in tests_by_dir.items():
        native.test_suite(name = directory + "/all", tests = dir_tests)
