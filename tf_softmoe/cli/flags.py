"""Command-line flags generated from the config dataclasses, and their
translation into an `ExperimentConfig`.

Every field of `AgentConfig`, `NetworkConfig`, `ScheduleConfig` and
`envs.AtariConfig` (but its game), and `game` and `protocol`, is a flag of
the same name, type and help (the class's `Attributes:` docstring), with the
field's default. `--agent` picks the preset (`ExperimentConfig.preset`); a
flag that is not set keeps the preset's value, so only the flags given on
the command line or in a `--flagfile` change the run. Two conveniences stay
from the hand-written flags: `--v_max` alone also sets v_min = −v_max, and
`--eval_max_steps=0` means no cap (as does `none`, which every optional
field accepts).
"""

import dataclasses
import os

from absl import flags
from absl import logging

from tf_softmoe import _config
from tf_softmoe import config as config_lib

PRESET_FLAG = "agent"
# Old flag name -> the config field it sets; each warns when used.
DEPRECATED_ALIASES = {"noise_sigma0": "noisy_sigma0", "sigma0": "noisy_sigma0"}
_NONE = ("none", "None", "")


class _OptionalParser(flags.ArgumentParser):
    """A number or `none` (None) for the Optional fields."""

    def __init__(self, kind):
        self.kind = kind

    def parse(self, argument):
        if argument is None or (isinstance(argument, str) and argument.strip() in _NONE):
            return None
        try:
            return self.kind(argument)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"expected {'an integer' if self.kind is int else 'a number'} or "
                f"'none', got {argument!r}") from error

    def flag_type(self):
        return f"{self.kind.__name__} or none"


def _config_fields():
    """(class, field) of every config field that is a flag."""
    from tf_softmoe.envs import atari  # pylint: disable=import-outside-toplevel
    top = {f.name: f for f in dataclasses.fields(config_lib.ExperimentConfig)}
    yield config_lib.ExperimentConfig, top["game"]
    yield config_lib.ExperimentConfig, top["protocol"]
    for cls in (config_lib.AgentConfig, config_lib.NetworkConfig,
                config_lib.ScheduleConfig, atari.AtariConfig):
        for field in dataclasses.fields(cls):
            if not (cls is atari.AtariConfig and field.name == "game"):
                yield cls, field


def config_flag_names():
    """The flags `config_from_flags` reads (besides --agent and the aliases)."""
    return tuple(field.name for _, field in _config_fields())


def _define(flag_values, cls, field, name=None, help_prefix=""):
    name = name or field.name
    kind, optional, element = _config.field_type(cls, field.name)
    default = field.default if field.default is not dataclasses.MISSING else None
    text = _config.field_docs(cls).get(field.name, field.name.replace("_", " "))
    help_text = (f"{help_prefix}{text} [{cls.__name__}.{field.name}; unset: the "
                 f"--{PRESET_FLAG} preset's value]")
    if cls is config_lib.ExperimentConfig and field.name == "game":
        help_text = f"{help_prefix}{text}"
    if help_prefix:
        default = None
    choices = field.metadata.get("choices")
    common = dict(flag_values=flag_values)
    if choices is not None:
        flags.DEFINE_enum(name, default, list(choices), help_text, **common)
    elif kind is tuple:
        flags.DEFINE_list(name, None if default is None else [str(v) for v in default],
                          help_text, **common)
    elif optional:
        flags.DEFINE(_OptionalParser(kind), name, default, help_text,
                     serializer=flags.ArgumentSerializer(), **common)
    elif kind is bool:
        flags.DEFINE_boolean(name, default, help_text, **common)
    elif kind is int:
        flags.DEFINE_integer(name, default, help_text, **common)
    elif kind is float:
        flags.DEFINE_float(name, default, help_text, **common)
    else:
        flags.DEFINE_string(name, default, help_text, **common)


def define_config_flags(flag_values=flags.FLAGS):
    """Defines --agent, one flag per config field and the deprecated aliases
    in `flag_values`."""
    flags.DEFINE_enum(PRESET_FLAG, "rainbow", list(config_lib.PRESETS),
                      "Preset (ExperimentConfig.preset): dqn, rainbow (main study, "
                      "dopamine protocol) or der (Atari 100k: der protocol, 10 x 10 000 "
                      "steps, 100 evaluation games).", flag_values=flag_values)
    fields = {}
    for cls, field in _config_fields():
        _define(flag_values, cls, field)
        fields[field.name] = (cls, field)
    for alias, target in DEPRECATED_ALIASES.items():
        _define(flag_values, *fields[target], name=alias,
                help_prefix=f"Deprecated alias of --{target}: ")


def _convert(name, value, cls, field):
    """A flag's value as the field's type; list elements parsed, naming the flag."""
    kind, _, element = _config.field_type(cls, field.name)
    if kind is not tuple or value is None:
        return value
    items = []
    for item in value:
        try:
            items.append(element(item.strip() if isinstance(item, str) else item))
        except (TypeError, ValueError):
            raise ValueError(
                f"--{name}: {item!r} is not {'an integer' if element is int else 'a number'}"
                f"; give a comma-separated list, e.g. --{name}="
                f"{','.join(str(v) for v in field.default)}.") from None
    return tuple(items)


def config_from_flags(flag_values):
    """The `ExperimentConfig` of parsed flags (`define_config_flags`'s).

    Pure: it reads `flag_values` only. The preset (--agent) gives every value
    a flag does not set.

    Raises:
      ValueError: an invalid value or combination; the message names the
        flags (they carry the config fields' names) and the valid range.
    """
    specs = {field.name: (cls, field) for cls, field in _config_fields()}
    values = {}
    for name, (cls, field) in specs.items():
        flag = flag_values[name]
        if not flag.using_default_value:
            values[name] = _convert(name, flag.value, cls, field)
    for alias, target in DEPRECATED_ALIASES.items():
        flag = flag_values[alias]
        if flag.using_default_value:
            continue
        if target in values:
            raise ValueError(f"--{alias} and --{target} set the same field; "
                             f"give only --{target}.")
        logging.warning("--%s is deprecated; use --%s.", alias, target)
        values[target] = _convert(target, flag.value, *specs[target])
    if "v_max" in values and "v_min" not in values and values["v_max"] is not None:
        values["v_min"] = -values["v_max"]
    if values.get("eval_max_steps") == 0:
        values["eval_max_steps"] = None
    game = values.pop("game", flag_values["game"].value)
    env_names = config_lib.env_fields()
    env_overrides = {name: values.pop(name) for name in env_names if name in values}
    if game == config_lib.CATCH_GAME and env_overrides:
        raise ValueError(f"--{' --'.join(env_overrides)} only apply to Atari games, "
                         "not --game=catch.")
    return config_lib.ExperimentConfig.preset(
        flag_values[PRESET_FLAG].value, game=game, env_overrides=env_overrides, **values)


def config_from_flagfile(path, **overrides):
    """`ExperimentConfig.from_flagfile`: the config of a flag file, with flags
    given as keywords (Python values) overriding the file's."""
    if not os.path.isfile(path):
        raise ValueError(f"flag file {path} does not exist (or is not a file).")
    flag_values = flags.FlagValues()
    define_config_flags(flag_values)
    try:
        flag_values(["tfsm", f"--flagfile={path}"])
    except flags.Error as error:
        raise ValueError(f"{path}: {error}") from error
    for name, value in overrides.items():
        if name not in flag_values:
            raise ValueError(f"{name!r} is not a config flag; valid: --{PRESET_FLAG} and "
                             f"--{', --'.join(config_flag_names())}.")
        flag_values[name].value = value
        flag_values[name].using_default_value = False
    try:
        return config_from_flags(flag_values)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
