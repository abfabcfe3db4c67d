#!/bin/bash
# Stands in for Bazel's Java coverage tools, which this offline setup cannot
# download. Coverage for this project comes from pytest, not from Bazel.
echo "remote_coverage_tools: 'bazel coverage' is not supported in this offline" \
     "workspace; measure coverage with pytest (e.g. pytest --cov) instead." >&2
exit 1
