"""Configuration: defaults < file < environment (``FORGE_*``) < command-line flags; file
location and key naming: docs/architecture.md."""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge_kernel.engine.config import EngineConfig
from forge_kernel.errors import ConfigError

LOG_FORMATS = ("auto", "console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(slots=True)
class ForgeConfig:
    """Core settings shared by the commands (plugins add sections)."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    log_format: str = "auto"
    """``auto`` (console on a terminal, else JSON), ``console`` or ``json``."""
    log_level: str = "info"
    plugins: str | None = None
    """Allow-list of plugins (comma-separated names); applied before any plugin is imported."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    sections: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    """Where each value came from (``forge config`` prints it)."""

    def section(self, name: str) -> Any:
        """A plugin's section: its declared dataclass, else a dict of the file's ``[name]``."""
        value = self.sections.get(name, {})
        return dict(value) if isinstance(value, dict) else value

    def effective(self) -> list[tuple[str, Any, str]]:
        """``(key, value, source)`` rows with secrets masked, for ``forge config``."""
        from forge_kernel.log import is_secret_key  # masks hf_token, not max_tokens

        rows = [(key, getattr(owner, key)) for key, (owner, _) in _keys(self).items()]
        for section, values in self.sections.items():
            items = (values.items() if isinstance(values, dict)
                     else ((f.name, getattr(values, f.name)) for f in dataclasses.fields(values)))
            rows += [(f"{section}.{key}", value) for key, value in items]
        return [(key, "***" if value and is_secret_key(key.rpartition(".")[2]) else value,
                 self.sources.get(key, "default")) for key, value in rows]


def _keys(config: ForgeConfig) -> dict[str, tuple[Any, Any]]:
    """Every top-level key -> (the object holding it, its type): server fields, then engine."""
    keys: dict[str, tuple[Any, Any]] = {}
    for owner in (config, config.engine):
        hints = typing.get_type_hints(type(owner))
        for f in dataclasses.fields(owner):
            if f.name not in ("engine", "sections", "sources"):
                keys[f.name] = (owner, hints[f.name])
    return keys


_declared: Callable[[], Mapping[str, type]] = dict


def declare_sections(source: Callable[[], Mapping[str, type]] | None) -> None:
    """Where :func:`load_config` finds declared sections (set by :mod:`forge_kernel.plugins`)."""
    global _declared
    _declared = source or dict


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _coerce(key: str, value: Any, hint: Any, from_text: bool, where: str) -> Any:
    """``value`` as type ``hint`` (text from env is parsed, file values must match), or a
    :class:`ConfigError` naming ``key``, its source and the expected type."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if type(None) in options and (value is None or (from_text and value == "")):
        return None
    for option in options:
        try:
            if option is bool:
                if isinstance(value, bool):
                    return value
                if from_text and str(value).lower() in _TRUE + _FALSE:
                    return str(value).lower() in _TRUE
            elif option in (int, float) and not isinstance(value, bool):
                if from_text or isinstance(value, int) or (option is float
                                                           and isinstance(value, float)):
                    return option(value)
            elif option is str and (isinstance(value, str) or from_text):
                return str(value)
        except ValueError:
            continue
    expected = " or ".join("null" if o is type(None) else o.__name__ for o in options)
    raise ConfigError(f"config key {key!r} (from {where}): expected {expected}, got {value!r}")


def forge_home() -> Path:
    """``$FORGE_HOME``, else ``~/.forge``: where the config file, models and runs live."""
    return Path(os.environ.get("FORGE_HOME") or Path.home() / ".forge").expanduser()


def config_file() -> Path | None:
    """``$FORGE_CONFIG`` (which must exist), else the first ``$FORGE_HOME/config.*``."""
    explicit = os.environ.get("FORGE_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"FORGE_CONFIG points to {path}, which does not exist")
        return path
    for suffix in ("toml", "yaml", "yml", "json"):
        path = forge_home() / f"config.{suffix}"
        if path.is_file():
            return path
    return None


def _read(path: Path) -> dict[str, Any]:
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as exc:  # each parser has its own error type
        raise ConfigError(f"{path}: cannot parse ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def _layers(config: ForgeConfig, hints: Mapping[str, Any], raw: Mapping[str, Any],
            path: Path | None, section: str = "") -> dict[str, Any]:
    """The file's ``raw`` values then ``FORGE_[<SECTION>_]<KEY>`` variables, type-checked, their
    sources recorded; an unknown file key is an error (a typo must not pass silently)."""
    prefix = f"{section}." if section else ""
    env_prefix = f"FORGE_{section.upper().replace('-', '_')}_" if section else "FORGE_"
    values: dict[str, Any] = {}

    def put(key: str, value: Any, from_text: bool, where: str) -> None:
        values[key] = _coerce(prefix + key, value, hints[key], from_text, where)
        config.sources[prefix + key] = where

    for key, value in raw.items():
        if key not in hints:
            known = ", ".join(sorted(hints)) or "none"
            raise ConfigError(f"{path}: unknown key {prefix}{key} (known: {known})" if section
                              else f"{path}: unknown config key {key!r} (known: {known})")
        put(key, value, False, f"file {path}")
    for key in hints:
        env_name = env_prefix + key.upper()
        if env_name in os.environ:
            put(key, os.environ[env_name], True, f"env {env_name}")
    return values


def load_config(flags: dict[str, Any] | None = None,
                sections: Mapping[str, type] | None = None) -> ForgeConfig:
    """The effective configuration; ``flags``: command-line values (``None`` = unset);
    ``sections``: name -> declared dataclass (default: the discovered host's)."""
    sections = _declared() if sections is None else sections
    config = ForgeConfig()
    keys = _keys(config)
    path = config_file()
    data = _read(path) if path is not None else {}
    config.sections = {k: v for k, v in data.items() if isinstance(v, dict)}
    values = _layers(config, {k: hint for k, (_, hint) in keys.items()},
                     {k: v for k, v in data.items() if not isinstance(v, dict)}, path)
    for key, value in (flags or {}).items():
        if value is not None and key in keys:
            values[key] = _coerce(key, value, keys[key][1], False, f"--{key.replace('_', '-')}")
            config.sources[key] = "command line"
    for key, value in values.items():
        setattr(keys[key][0], key, value)
    for key, allowed in (("log_format", LOG_FORMATS), ("log_level", LOG_LEVELS)):
        if str(getattr(config, key)).lower() not in allowed:
            raise ConfigError(f"config key {key!r} ({config.sources.get(key)}): expected one "
                              f"of {', '.join(allowed)}, got {getattr(config, key)!r}")
    for name, schema in sections.items():
        hints = typing.get_type_hints(schema)
        known = {f.name: hints[f.name] for f in dataclasses.fields(schema)}
        values = _layers(config, known, config.sections.get(name, {}), path, name)
        try:
            config.sections[name] = schema(**values)
        except TypeError as exc:  # a field without default left unset
            raise ConfigError(f"config section [{name}]: {exc}") from None
    return config
