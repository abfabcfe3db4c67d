"""Saving and loading Q-networks as `.keras` files that name their writer.

`save_q_network` writes a `.keras` file (Keras's own format: `config.json`,
`model.weights.h5` and `metadata.json` in a zip) and adds the version of
tf_softmoe that wrote it to `metadata.json` (`"tf_softmoe_version"`). A run
exports its `q_network.keras` this way.

`load_q_network` loads one back. Any `.keras` file with our layers also loads
with plain `tf.keras.models.load_model` after `import tf_softmoe`; the helper
adds a clear error where Keras gives a cryptic one: a file written by a newer
tf_softmoe that uses a class, argument or `NetworkConfig` field this version
does not have (Keras then fails deep inside with e.g. `'str' object is not
callable`). The error names what is missing and the version that wrote the
file.
"""

import dataclasses
import inspect
import io
import json
import os
import zipfile

import tensorflow as tf

import tf_softmoe
from tf_softmoe.layers import _common
from tf_softmoe.networks import config as network_config
from tf_softmoe.networks import penultimate

METADATA_FILE = "metadata.json"
CONFIG_FILE = "config.json"
VERSION_KEY = "tf_softmoe_version"
RUN_FILE = "q_network.keras"

# Arguments tf.keras.layers.Layer takes through **kwargs (its __init__ checks
# them against this list) besides the ones in its signature.
_LAYER_KWARGS = frozenset({
    "input_dim", "input_shape", "batch_input_shape", "batch_size", "weights",
    "activity_regularizer", "autocast", "implementation"})

# Arguments that hold a config dataclass as a plain dict: its fields are
# checked like arguments. PenultimateBlock's `config` is only in files saved
# before the block took explicit arguments; its from_config still reads them.
_NESTED_CONFIGS = {penultimate.PenultimateBlock: {"config": network_config.NetworkConfig}}


class IncompatibleModelError(ValueError):
    """A `.keras` file uses classes or arguments this tf_softmoe lacks."""


def save_q_network(model, path):
    """Writes `model` to the `.keras` file `path`, recording tf_softmoe's version.

    Args:
      model: a `tf.keras.Model`, or a `tf_softmoe.networks.QNetwork` (saved as
        its `as_keras_model()`).
      path: the file to write; must end in `.keras`.

    Returns:
      `path`.
    """
    if hasattr(model, "as_keras_model"):
        model = model.as_keras_model()
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"save_q_network writes a .keras file; got {path!r}. "
                         "Give a path ending in .keras.")
    model.save(path)
    _add_metadata(path, {VERSION_KEY: tf_softmoe.__version__})
    return path


def load_q_network(path, custom_objects=None, compile=True,  # pylint: disable=redefined-builtin
                   safe_mode=True):
    """Loads a `.keras` Q-network (or any `.keras` model with our layers).

    Args:
      path: a `.keras` file, or a run directory holding `q_network.keras`.
      custom_objects, compile, safe_mode: as `tf.keras.models.load_model`.

    Returns:
      The `tf.keras.Model` (for a run's file: uint8 observations `[B, H, W, C]`
      → Q-values `[B, A]`, or C51 logits `[B, A, atoms]`).

    Raises:
      FileNotFoundError: no such file, or the directory has no q_network.keras.
      IncompatibleModelError: the file uses a tf_softmoe class, argument or
        `NetworkConfig` field this version lacks; the message names each and
        the version that wrote the file.
    """
    path = os.fspath(path)
    if tf.io.gfile.isdir(path):
        path = os.path.join(path, RUN_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"No Q-network file at {path!r}. Give a .keras file or a run directory "
            f"holding {RUN_FILE} (a run writes it when it finishes).")
    try:
        return tf.keras.models.load_model(path, custom_objects=custom_objects,
                                          compile=compile, safe_mode=safe_mode)
    except Exception as error:  # pylint: disable=broad-except
        try:
            metadata, config = _read_archive(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            metadata, config = {}, {}  # not a .keras archive: Keras's error says so
        missing = unknown_parts(config, custom_objects)
        written_by = metadata.get(VERSION_KEY)
        if not missing and not written_by and _has_impala_encoder(config) and (
                "variables, but received 0" in str(error)):
            raise IncompatibleModelError(
                f"Cannot load {path}: it is an Impala Q-network exported before "
                "tf_softmoe recorded its version in the file, and those exports "
                "left out the weights of the Impala residual blocks. Export it "
                "again from the run's checkpoint: `_, agent, _ = tf_softmoe.train."
                "experiment.load_agent(run_dir)`, then `tf_softmoe.save_q_network("
                "agent.q_network, path)`.") from error
        if not missing:
            raise
        writer = (f"tf_softmoe {written_by}" if written_by else
                  "a tf_softmoe version it does not record (it was not saved "
                  "with tf_softmoe.save_q_network)")
        upgrade = (f"tf_softmoe {written_by} or newer" if written_by
                   else "the tf_softmoe version that wrote it")
        raise IncompatibleModelError(
            f"Cannot load {path}: it was written by {writer} and uses "
            + "; ".join(missing)
            + f", which tf_softmoe {tf_softmoe.__version__} (this one) does not have. "
            f"Install {upgrade} to load it.") from error


def unknown_parts(config, custom_objects=None):
    """What a saved model config needs from tf_softmoe that this version lacks.

    Args:
      config: the model's `config.json`, as a dict.
      custom_objects: objects the caller provides by name (never missing).

    Returns:
      A list of descriptions ("class 'tf_softmoe>X'", "argument 'y' of
      tf_softmoe>SoftMoE", ...), empty when everything is known.
    """
    custom_objects = custom_objects or {}
    found = []
    for item in _serialized_objects(config):
        name = item.get("registered_name") or item["class_name"]
        module = item.get("module") or ""
        if not (name.startswith(_common.PACKAGE + ">") or module == _common.PACKAGE
                or module.startswith(_common.PACKAGE + ".")):
            continue
        if name in custom_objects or item["class_name"] in custom_objects:
            continue
        cls = tf.keras.utils.get_registered_object(name)
        if cls is None:
            found.append(f"class {name!r} (module {module})")
            continue
        arguments = item["config"] if isinstance(item["config"], dict) else {}
        accepted = _accepted_arguments(cls)
        nested = _nested_configs(cls)
        if accepted is not None:
            accepted |= set(nested)
            found.extend(f"argument {key!r} of {name}"
                         for key in sorted(set(arguments) - accepted))
        for key, config_class in nested.items():
            fields = {f.name for f in dataclasses.fields(config_class)}
            value = arguments.get(key)
            if isinstance(value, dict):
                found.extend(f"{config_class.__name__} field {field!r} (in {name})"
                             for field in sorted(set(value) - fields))
    return found


def _has_impala_encoder(config):
    return any((item.get("registered_name") or item["class_name"]) ==
               _common.PACKAGE + ">ImpalaEncoder" for item in _serialized_objects(config))


def _serialized_objects(value):
    """Every `{"class_name": ..., "config": ...}` dict nested in `value`."""
    if isinstance(value, dict):
        if isinstance(value.get("class_name"), str) and "config" in value:
            yield value
        for child in value.values():
            yield from _serialized_objects(child)
    elif isinstance(value, (list, tuple)):
        for child in value:
            yield from _serialized_objects(child)


def _accepted_arguments(cls):
    """Keyword arguments `cls(**config)` accepts; None when it takes any."""
    accepted = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        accepted.update(p.name for p in parameters if p.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
        if klass is tf.keras.layers.Layer:
            return accepted | _LAYER_KWARGS
        if not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters):
            return accepted
    return None


def _nested_configs(cls):
    nested = {}
    for klass, configs in _NESTED_CONFIGS.items():
        if issubclass(cls, klass):
            nested.update(configs)
    return nested


def _read_archive(path):
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        metadata = json.loads(archive.read(METADATA_FILE))
        config = json.loads(archive.read(CONFIG_FILE))
    return metadata, config


def read_metadata(path):
    """The `metadata.json` of a `.keras` file (keras_version, date_saved and,
    when tf_softmoe wrote it, tf_softmoe_version)."""
    return _read_archive(os.fspath(path))[0]


def _add_metadata(path, values):
    """Rewrites the archive with `values` merged into its metadata.json."""
    with tf.io.gfile.GFile(path, "rb") as f:
        original = f.read()
    rewritten = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(original)) as source, \
            zipfile.ZipFile(rewritten, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == METADATA_FILE:
                metadata = json.loads(data)
                metadata.update(values)
                data = json.dumps(metadata).encode("utf-8")
            target.writestr(info, data)
    # Written beside the file and renamed over it, so a crash leaves either
    # the old or the new archive.
    temporary = path + ".tmp"
    with tf.io.gfile.GFile(temporary, "wb") as f:
        f.write(rewritten.getvalue())
    tf.io.gfile.rename(temporary, path, overwrite=True)
