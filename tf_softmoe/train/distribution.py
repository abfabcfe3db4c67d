"""The `tf.distribute` strategy a run's learner trains under.

`--distribution` (`ScheduleConfig.distribution`) picks one:

    none      TensorFlow's default strategy: one device, the learner's own
              compiled step (the default; nothing changes).
    mirrored  `tf.distribute.MirroredStrategy`: data parallelism over the
              visible GPUs (or, without a GPU, over the logical CPU devices;
              one unless split with `tf.config.set_logical_device_configuration`).
              Each replica computes the loss and gradients of its slice of the
              batch, the gradients are summed across replicas, and every copy
              of the variables applies the same update.
    tpu       `tf.distribute.TPUStrategy` on the TPU at `tpu_address` ("local"
              on a TPU VM). The `tensorflow-tpu` package stops at 2.20, so a
              TPU needs that TensorFlow (tensorflow==2.20 with the matching
              tensorflow-tpu/libtpu), not the 2.21 this project pins; without
              TPU support in the build, or without a TPU, resolving the
              strategy raises `DistributionError` naming the fix.

docs/distribution.md says when each helps: the paper's networks are small
and a batch of 32 splits into little work per device, so independent runs
(the sweep backends) are the way to scale; a strategy is for TPUs and
large-batch studies.
"""

from absl import logging
import tensorflow as tf

from tf_softmoe.config import DISTRIBUTIONS

# Resolved once per process: a TPU system is initialised once, and every
# agent of the process must live in the same strategy's scope.
_RESOLVED = {}


class DistributionError(ValueError):
    """The requested strategy cannot run here (no TPU, no TPU support in
    this TensorFlow, a batch that does not split over the replicas)."""


def _tpu_problem(error):
    text = str(error)
    if "ConfigureDistributedTPU" in text or "No OpKernel" in text:
        return ("this TensorFlow build has no TPU support (tensorflow "
                f"{tf.__version__}; tensorflow-tpu stops at 2.20)")
    return f"no TPU was found ({text.strip().splitlines()[0] if text.strip() else type(error).__name__})"


def _tpu_strategy(tpu_address):
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise DistributionError(
            f"--distribution=tpu at tpu_address={tpu_address!r}: {_tpu_problem(error)}. "
            "Run on a TPU VM (--tpu_address=local) or name the TPU (--tpu_address="
            "<name or grpc://host:port>), with a TensorFlow that supports TPUs: "
            "tensorflow==2.20 with tensorflow-tpu==2.20 (the last release); "
            "or use --distribution=none or --distribution=mirrored.") from error


def mirrored_devices():
    """The devices `mirrored` replicates over: every logical GPU, or every
    logical CPU device when there is no GPU."""
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    return [device.name for device in devices]


def resolve_strategy(distribution="none", tpu_address="local", devices=None):
    """The strategy of `distribution`, made once per process.

    Args:
      distribution: "none", "mirrored" or "tpu".
      tpu_address: the TPU for "tpu": "local" on a TPU VM, a TPU name or a
        grpc:// address.
      devices: for "mirrored", the device names to replicate over (default:
        `mirrored_devices()`).

    Returns:
      A `tf.distribute.Strategy`; for "none", `tf.distribute.get_strategy()`
      (the default strategy, under which nothing is distributed).

    Raises:
      DistributionError: "tpu" without a TPU or without TPU support in this
        TensorFlow; an unknown `distribution`.
    """
    if distribution not in DISTRIBUTIONS:
        raise DistributionError(f"distribution must be one of {list(DISTRIBUTIONS)}, "
                                f"got {distribution!r}.")
    if distribution == "none":
        return tf.distribute.get_strategy()
    key = (distribution, tpu_address if distribution == "tpu" else
           tuple(devices) if devices else None)
    if key not in _RESOLVED:
        if distribution == "tpu":
            _RESOLVED[key] = _tpu_strategy(tpu_address)
        else:
            devices = list(devices) if devices else mirrored_devices()
            if len(devices) < 2:
                logging.warning("--distribution=mirrored over one device (%s): a "
                                "one-replica strategy, slower than none.", devices)
            _RESOLVED[key] = tf.distribute.MirroredStrategy(devices)
        logging.info("Learner strategy: %s, %d replicas.", type(_RESOLVED[key]).__name__,
                     _RESOLVED[key].num_replicas_in_sync)
    return _RESOLVED[key]


def is_distributed(strategy):
    """Whether `strategy` is a strategy of its own, not None or TensorFlow's
    default strategy (which `none` resolves to)."""
    # The default strategy has no public type; its extended object names it.
    return strategy is not None and (
        type(strategy.extended).__name__ != "_DefaultDistributionExtended")


def check_batch_split(batch_size, strategy):
    """Raises `DistributionError` when `batch_size` does not split evenly
    over the replicas of `strategy`."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise DistributionError(
            f"batch_size={batch_size} does not split over the {replicas} replicas of "
            f"--distribution; choose a batch size that is a multiple of {replicas} "
            "(the global batch stays batch_size).")
