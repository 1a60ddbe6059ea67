"""Typed construction of the spec dataclasses from plain YAML/JSON values.

Every error names the source (file) and the dotted field: a typo in a run spec is a one-line fix.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from forge_kernel.errors import ConfigError


def plain(value: Any) -> Any:
    """Tuples to lists, recursively: what YAML/JSON can write back."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def build(cls: type, raw: Any, source: str, prefix: str) -> Any:
    """Dataclass ``cls`` from mapping ``raw``; unknown or mistyped fields are errors."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: field '{prefix.rstrip('.') or 'spec'}' must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown field '{prefix}{unknown[0]}' "
                          f"(known: {', '.join(sorted(fields))})")
    values = {}
    for name, value in raw.items():
        values[name] = coerce(hints[name], value, source, prefix + name)
    return cls(**values)


def coerce(hint: Any, value: Any, source: str, name: str) -> Any:
    """``value`` checked against (and converted to) type ``hint``."""
    if dataclasses.is_dataclass(hint):
        return build(hint, value, source, name + ".")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        return coerce(hint, value, source, name)
    problem = f"{source}: field '{name}' must be {describe(hint)}, not {value!r}"
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(problem)
        item = args[0]
        items = [coerce(item, v, source, name) for v in value]
        if origin is tuple:
            if len(items) != len(args):
                raise ConfigError(problem)
            return tuple(items)
        return items
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(problem)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(problem)
        return value
    if hint is float:
        if isinstance(value, str):  # YAML reads 2e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise ConfigError(problem) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(problem)
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(problem)
        return str(value)
    return value


def describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, str(hint))
