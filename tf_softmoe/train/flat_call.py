"""Calling a traced function on flat tensors, for the per-step hot paths.

The public call of a `tf.function` (or of its concrete function) re-binds
the arguments to the signature and checks their types on every call: 1.5–2.5
ms on a CPU (`benchmarks/policy_bench.py`, `call_overhead_ms`), a third of a
batch-of-one policy call through the Impala encoder. The acting policy and
the learner call with a fixed signature, check shapes and dtypes themselves,
and so run the concrete function directly.
"""

import numpy as np


def checked_array(value, dtype, shape, label, expected):
    """`value` as a NumPy array of `dtype`, refusing any shape but `shape`.

    Args:
      value: array-like input for one flat argument.
      dtype, shape: what the traced signature takes (without any batch
        dimension the caller adds itself).
      label, expected: name the input and the expectation in the error.

    Raises:
      ValueError: the shape differs.
    """
    value = np.asarray(value, dtype=dtype)
    if value.shape != shape:
        raise ValueError(f"{label} has shape {value.shape}; {expected}.")
    return value


def flat_caller(concrete):
    """`call(tensors)` running a concrete function on its flat inputs.

    `_call_flat` (TensorFlow 2.x) takes the inputs and the captured
    variables as they are, skipping the per-call re-binding of the public
    call, which is the fallback where a TensorFlow version lacks it.
    Captured variables are read when the function runs, so assignments
    after tracing are seen.

    Args:
      concrete: a `ConcreteFunction` (`tf.function(...).get_concrete_function()`).
    """
    call_flat = getattr(concrete, "_call_flat", None)
    if call_flat is None:
        return lambda tensors: concrete(*tensors)
    captures = concrete.captured_inputs
    return lambda tensors: call_flat(tensors, captures)
