"""The native Python rules of Bazel 4, under the names rules_python exports.

BUILD files load py_library/py_binary/py_test from here (as they would from
the real rules_python) while the rules that run are the ones built into Bazel.
"""

load("@bazel_tools//tools/python:toolchain.bzl", _py_runtime_pair = "py_runtime_pair")

py_binary = native.py_binary
py_library = native.py_library
py_runtime = native.py_runtime
py_test = native.py_test
py_runtime_pair = _py_runtime_pair
