"""The reference tier: skipped, visibly, when the official code is not installed."""

import pytest

from tests.reference import reference_env


@pytest.fixture(scope="session")
def reference():
    """`reference_env.run`, or a skip (a failure under TFSM_REQUIRE_REFERENCE=1)."""
    if reference_env.reference_python() is None:
        message = ("reference tier skipped: dopamine-rl 4.1.2's environment is "
                   f"missing; {reference_env.HOW_TO_MAKE}.")
        if reference_env.required():
            pytest.fail(message + f" ({reference_env.REQUIRE_ENV} is set)")
        pytest.skip(message)
    return reference_env.run
