"""What the frozen config dataclasses share: dict round trips, the checks of
each field's type (NaN and infinities included), and the field
descriptions read from the class's `Attributes:` docstring section."""

import dataclasses
import functools
import math
import numbers
import re
import typing


def field_type(cls, name):
    """(base type, optional, element type) of a field's annotation.

    `Optional[int]` gives (int, True, None); `Tuple[float, ...]` gives
    (tuple, False, float).
    """
    hint = typing.get_type_hints(cls)[name]
    optional = False
    if typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, args[0]
    if typing.get_origin(hint) is tuple:
        return tuple, optional, typing.get_args(hint)[0]
    return hint, optional, None


@functools.lru_cache(maxsize=None)
def field_docs(cls):
    """{field name: description} from the `Attributes:` section of `cls`'s
    docstring; "a, b: text" describes both a and b."""
    lines = (cls.__doc__ or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return {}
    docs, names, indent = {}, [], None
    entry = re.compile(r"^(\s*)([a-z_][a-z0-9_]*(?:,\s*[a-z_][a-z0-9_]*)*):\s*(.*)$")
    for line in lines[start + 1:]:
        if not line.strip():
            if names:
                break
            continue
        match = entry.match(line)
        depth = len(line) - len(line.lstrip())
        if match and (indent is None or depth == indent):
            indent = depth
            names = [n.strip() for n in match.group(2).split(",")]
            for name in names:
                docs[name] = match.group(3).strip()
        elif names and depth > (indent or 0):
            for name in names:
                docs[name] += " " + line.strip()
        else:
            break
    return docs


def check_types(config):
    """Raises ValueError naming the field when a value has the wrong type or
    is a non-finite number; converts ints given for floats and lists given
    for tuples (so JSON round trips compare equal)."""
    cls = type(config)
    for field in dataclasses.fields(cls):
        if not field.init or field.name.startswith("_"):
            continue
        kind, optional, element = field_type(cls, field.name)
        value = getattr(config, field.name)
        if value is None and optional:
            continue
        converted = _checked(field.name, value, kind, element, optional)
        if converted is not value:
            object.__setattr__(config, field.name, converted)


def _describe(kind, element, optional):
    names = {int: "an integer", float: "a finite number", bool: "True or False",
             str: "a string"}
    text = (f"a list of {names.get(element, 'values').split(' ', 1)[1]}s"
            if kind is tuple else names.get(kind, kind.__name__))
    return text + (" or None" if optional else "")


def _checked(name, value, kind, element, optional):
    def fail():
        raise ValueError(f"{name} must be {_describe(kind, element, optional)}, "
                         f"got {value!r}.")
    if kind is bool:
        return value if isinstance(value, bool) else fail()
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            fail()
        return value if type(value) is int else int(value)
    if kind is float:
        if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                or not math.isfinite(float(value))):
            fail()
        return value if type(value) is float else float(value)
    if kind is str:
        return value if isinstance(value, str) else fail()
    if kind is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            fail()
        items = tuple(_checked(name, v, element, None, False) for v in value) \
            if element in (int, float, str, bool) else tuple(value)
        return value if (type(value) is tuple and all(
            a is b for a, b in zip(items, value))) else items
    if kind is dict:
        return value if isinstance(value, dict) else fail()
    return value


def check_range(name, value, low=None, high=None, low_open=False, high_open=False):
    """Raises ValueError naming `name` and the valid range when `value` is
    outside it (None bounds are unbounded)."""
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not (too_low or too_high):
        return
    what = "an integer" if isinstance(value, int) else "a finite number"
    if high is None:
        bound = f"{'>' if low_open else '>='} {low}"
    elif low is None:
        bound = f"{'<' if high_open else '<='} {high}"
    else:
        bound = (f"in {'(' if low_open else '['}{low}, {high}"
                 f"{')' if high_open else ']'}")
    raise ValueError(f"{name} must be {what} {bound}, got {value!r}.")


def check_choice(name, value, valid):
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(valid)}.")


class DictConfig:
    """`replace`, `to_dict` and a checked `from_dict` for a frozen dataclass."""

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Builds the config; unknown keys raise ValueError listing the valid ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"Unknown {cls.__name__} fields {unknown}; valid: {sorted(known)}.")
        return cls(**values)
