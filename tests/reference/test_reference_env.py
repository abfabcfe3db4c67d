"""The harness itself: arrays go to the official code and come back."""

import numpy as np


def test_arrays_round_trip_through_the_reference_environment(reference):
    out = reference("""
        import dopamine, jax.numpy as jnp
        outputs["doubled"] = np.asarray(jnp.asarray(inputs["x"]) * 2)
        outputs["has_moes"] = np.array(
            __import__("importlib").util.find_spec("dopamine.labs.moes") is not None)
    """, x=np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(out["doubled"], np.arange(6).reshape(2, 3) * 2)
    assert bool(out["has_moes"])
