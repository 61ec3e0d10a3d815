"""Declared options: a type, a default and an allowed range, written once next to what they configure.

Config validation (:mod:`convnet.config`), the block list of ConvNet, the learning-rate
schedules and the generated tables of docs/experiments.md all read the same declarations::

    SIZE = Option(3, int, range="[1, inf)", help="filter side in pixels")
    resolve("model.layers[0]", {"size": 5}, {"size": SIZE})   # -> {"size": 5}

Errors are :class:`ConfigError` (a ValueError) and name the key; unknown keys and
names get the closest valid one (:func:`did_you_mean`), the one place that does so.
``label`` says what the name is: ``"config key"`` (the default) in a YAML file, e.g.
``"FullyConnectedNet argument"`` or ``"Solver argument"`` for a keyword argument, so the
same declarations check configs and Python calls, each message naming what the user wrote.

    check("normalization", "bn", option, label="FullyConnectedNet argument")
    # ConfigError: FullyConnectedNet argument 'normalization' must be one of [...], got 'bn'
"""

import copy
import difflib
import math
import numbers
from typing import NamedTuple

import numpy as np

REQUIRED = object()
NONE = type(None)

TYPE_NAMES = {int: "an integer", float: "a number", bool: "true/false", str: "a string", dict: "a mapping",
              list: "a list", NONE: "null"}


class ConfigError(ValueError):
    """A config key, type or value is not allowed; the message names the key."""


class Range(NamedTuple):
    """An interval such as ``(0, 1]``: low/high bounds (inf for none) and whether each end is included."""

    low: float
    high: float
    low_closed: bool
    high_closed: bool
    text: str

    @classmethod
    def parse(cls, text):
        text = text.strip()
        if text[0] not in "[(" or text[-1] not in "])" or "," not in text:
            raise ValueError(f"a range is written like '[0, 1)' or '(0, inf)', got {text!r}")
        low, high = (float(part) for part in text[1:-1].split(","))
        return cls(low, high, text[0] == "[", text[-1] == "]", text)

    def __contains__(self, value):
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def describe(self):
        """'>= 1', '> 0', 'in (0, 1]'."""
        if math.isinf(self.high):
            return f"{'>=' if self.low_closed else '>'} {_number(self.low)}"
        return f"in {self.text}"


def _number(x):
    return str(int(x)) if float(x).is_integer() else repr(x)


class Option:
    """One config key: its default (REQUIRED: none), accepted types, and allowed choices or range.

    types: a type or a tuple of types (ints are accepted where floats are, and numeric strings
    such as YAML 1.1's '1e-5' are read as the number). range: an interval, '[0, inf)', '(0, 1]'.
    each: the Option every list item must fit; length: the list's required length.
    """

    def __init__(self, default, types, *, choices=None, range=None, each=None, length=None, help=""):
        self.default = default
        self.types = types if isinstance(types, tuple) else (types,)
        self.choices = None if choices is None else tuple(choices)
        self.range = Range.parse(range) if isinstance(range, str) else range
        self.each, self.length, self.help = each, length, help

    def __repr__(self):
        return f"Option(default={self.default!r}, allowed={self.describe()!r})"

    def replace(self, *, default, help):
        """The same rule (types, choices, range) with another default and help, e.g. where a config's
        default differs from a constructor's."""
        changed = copy.copy(self)
        changed.default, changed.help = default, help
        return changed

    def describe(self, write_choice=str):
        """What values are allowed, for messages and the docs: 'an integer >= 1', 'one of a, b'.

        write_choice formats each choice's YAML spelling (the docs write them as code).
        """
        if self.choices is not None:
            return "one of " + ", ".join(write_choice(_yaml_word(c)) for c in self.choices)
        names = []
        for t in self.types:
            name = TYPE_NAMES.get(t, t.__name__)
            if t is list and self.each is not None:
                count = f"{self.length} " if self.length else ""
                name = f"a list of {count}{_plural(self.each.describe())}"
            elif t in (int, float) and self.range is not None:
                name = f"{name} {self.range.describe()}"
            names.append(name)
        return " or ".join(names)


def _yaml_word(choice):
    """A choice as a YAML file writes it: null, true, false, or the value."""
    return {None: "null", True: "true", False: "false"}[choice] if choice is None or isinstance(choice, bool) \
        else str(choice)


def _plural(description):
    """'an integer >= 1' -> 'integers >= 1'."""
    for article in ("an ", "a "):
        if description.startswith(article):
            noun, _, rest = description[len(article):].partition(" ")
            return f"{noun}s {rest}".strip()
    return description


def did_you_mean(word, allowed):
    """'; did you mean 'x'?' for the allowed name closest to word, or '' when none is close."""
    names = [str(name) for name in allowed if name is not None]
    match = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def not_one_of(path, value, allowed, context="", label="config key"):
    """ConfigError: path's value must be one of allowed (with the closest one suggested)."""
    names = ", ".join(_yaml_word(name) if name is None or isinstance(name, bool) else repr(name)
                      for name in allowed)  # as the YAML file writes None, True and False
    return ConfigError(f"{label} '{path}'{context} must be one of [{names}], got {value!r}"
                       f"{did_you_mean(value, allowed)}")


def choose(path, name, registry, label="config key"):
    """registry[name] for the type/rule name at path, else the not_one_of ConfigError."""
    if name is None:
        raise ConfigError(f"{label} '{path}' is required: one of {list(registry)}")
    if not isinstance(name, str) or name not in registry:
        raise not_one_of(path, name, registry, label=label)
    return registry[name]


def unknown_key(path, key, allowed, context="", label="config key"):
    """ConfigError for a key that is not declared; context says what decides the keys, e.g. ' for adam'."""
    return ConfigError(f"{label} '{path}'{context}: unknown{did_you_mean(key, allowed)} "
                       f"(allowed: {', '.join(allowed) or 'none'})")


def _fits(value, t):
    is_bool = isinstance(value, (bool, np.bool_))
    if t is float:  # numbers.Real and Integral: numpy scalars passed from Python fit too
        return isinstance(value, numbers.Real) and not is_bool
    if t is int:
        return isinstance(value, numbers.Integral) and not is_bool
    if t is bool:
        return is_bool
    return isinstance(value, t)


def check(path, value, option, label="config key"):
    """value if it fits option (converted: numeric strings and ints to float where a number is asked), else ConfigError."""
    types = option.types
    if float in types and isinstance(value, str):
        # PyYAML follows YAML 1.1, which reads 3e-4 (no dot) as a string; accept it as the number meant.
        try:
            value = float(value)
        except ValueError:
            pass
    matching = [t for t in types if _fits(value, t)]
    if not matching:
        raise ConfigError(f"{label} '{path}' must be {option.describe()}, got {value!r}")
    if option.choices is not None and value not in option.choices:
        raise not_one_of(path, value, option.choices, label=label)
    if matching[0] in (int, float):
        if not math.isfinite(value):
            raise ConfigError(f"{label} '{path}' must be a finite number, got {value!r}")
        if option.range is not None and value not in option.range:
            raise ConfigError(f"{label} '{path}' must be {option.range.describe()}, got {value!r}")
        value = float(value) if matching[0] is float else int(value)
    if isinstance(value, list):
        if option.length is not None and len(value) != option.length:
            raise ConfigError(f"{label} '{path}' must be {option.describe()}, got {len(value)} items: {value!r}")
        if option.each is not None:
            value = [check(f"{path}[{i}]", item, option.each, label) for i, item in enumerate(value)]
    return value


def subkey(path, key):
    """The name of key inside path: 'model.layers', or 'layers' at the top ('' path)."""
    return f"{path}.{key}" if path else key


def resolve(path, raw, options, context="", label="config key"):
    """A mapping checked against declared options: unknown keys refused, defaults filled in.

    path: where the mapping sits ('' for the top level, else e.g. 'solver'); context is
    added to messages about keys (' for cosine'). Returns a new dict in declaration order.
    """
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{label} '{path}' must be a mapping, got {raw!r}")
    for key in raw:
        if key not in options:
            raise unknown_key(subkey(path, key), key, list(options), context, label)
    resolved = {}
    for key, declared in options.items():
        if key in raw:
            resolved[key] = check(subkey(path, key), raw[key], declared, label)
        elif declared.default is REQUIRED:
            raise ConfigError(f"{label} '{subkey(path, key)}' is required{context}")
        else:
            resolved[key] = copy.deepcopy(declared.default)
    return resolved

