"""Configuration: defaults < file < environment (``FORGE_*``) < command-line flags.

The file is ``$FORGE_CONFIG`` or ``$FORGE_HOME/config.{toml,yaml,yml,json}`` (``FORGE_HOME``
defaults to ``~/.forge``). Top-level keys are :class:`ForgeConfig`'s server fields and the
fields of its nested :class:`~forge_kernel.engine.config.EngineConfig` (the one home of engine
defaults), set by name everywhere: ``max_batch_size = 8`` in the file, ``FORGE_MAX_BATCH_SIZE``,
``--max-batch-size``. Tables/mappings are per-plugin sections, read with
:meth:`ForgeConfig.section`. Every value remembers where it came from (``forge config`` prints
it); a value of the wrong type is a :class:`ConfigError` naming the key and the expected type.

Loading never discovers plugins (this module does not import :mod:`forge_kernel.plugins`): the
sections plugins declared are passed in, or come from the plugin host already discovered
(:func:`declare_sections`).
"""

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

SECRET_FIELDS = frozenset({"api_key"})
LOG_FORMATS = ("auto", "console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(slots=True)
class ForgeConfig:
    """Core settings shared by the commands (plugins add sections)."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    log_format: str = "auto"
    """``auto`` (console on a terminal, JSON lines otherwise), ``console`` or ``json``."""
    log_level: str = "info"
    plugins: str | None = None
    """Allow-list of plugins (comma-separated names); applied before any plugin is imported."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    sections: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def section(self, name: str) -> Any:
        """A plugin's section: an instance of the dataclass the plugin declared through
        ``forge_register_config_sections`` (defaults filled in), or a plain dict of the file's
        ``[name]`` table for an undeclared section (empty when absent)."""
        value = self.sections.get(name, {})
        return dict(value) if isinstance(value, dict) else value

    def effective(self) -> list[tuple[str, Any, str]]:
        """``(key, value, source)`` rows with secrets masked, for ``forge config``."""
        rows = []
        for key, (owner, _) in _keys(self).items():
            rows.append((key, _masked(key, getattr(owner, key)), self.sources.get(key, "default")))
        for section, values in self.sections.items():
            items = (values.items() if isinstance(values, dict)
                     else ((f.name, getattr(values, f.name)) for f in dataclasses.fields(values)))
            for key, value in items:
                rows.append((f"{section}.{key}", _masked(key, value),
                             self.sources.get(f"{section}.{key}", "default")))
        return rows


def _masked(key: str, value: Any) -> Any:
    from forge_kernel.log import is_secret_key  # masks hf_token, not max_tokens

    return "***" if value and (key in SECRET_FIELDS or is_secret_key(key)) else value


def _keys(config: ForgeConfig) -> dict[str, tuple[Any, Any]]:
    """Every top-level key -> (the object holding it, its type): server fields, then the
    engine's."""
    keys: dict[str, tuple[Any, Any]] = {}
    for owner in (config, config.engine):
        hints = typing.get_type_hints(type(owner))
        for f in dataclasses.fields(owner):
            if f.name not in ("engine", "sections", "sources"):
                keys[f.name] = (owner, hints[f.name])
    return keys


_declared: Callable[[], Mapping[str, type]] = dict


def declare_sections(source: Callable[[], Mapping[str, type]] | None) -> None:
    """Tell :func:`load_config` where the declared sections are (``section -> dataclass``):
    called by :mod:`forge_kernel.plugins` for the process-wide host, so this module never
    imports (and never triggers discovery of) plugins."""
    global _declared
    _declared = source or dict


def _coerce(key: str, value: Any, hint: Any, from_text: bool,  # noqa: C901
            where: str = "") -> Any:
    """Convert ``value`` to the field type ``hint`` or raise naming ``key``, where the value
    came from (``where``: ``env FORGE_PORT``, a file, ``--port``) and the expected type."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None or (from_text and value == "" and type(None) in options):
        if type(None) in options:
            return None
    for option in options:
        if option is type(None):
            continue
        try:
            if option is bool:
                if isinstance(value, bool):
                    return value
                if from_text and str(value).lower() in ("1", "true", "yes", "on", "0",
                                                        "false", "no", "off"):
                    return str(value).lower() in ("1", "true", "yes", "on")
            elif option is int and not isinstance(value, bool):
                if isinstance(value, int) or from_text:
                    return int(value)
            elif option is float and not isinstance(value, bool):
                if isinstance(value, int | float) or from_text:
                    return float(value)
            elif option is str and (isinstance(value, str) or from_text):
                return str(value)
        except ValueError:
            continue
    expected = " or ".join("null" if o is type(None) else o.__name__ for o in options)
    origin = f" (from {where})" if where else ""
    raise ConfigError(f"config key {key!r}{origin}: expected {expected}, got {value!r}")


def forge_home() -> Path:
    return Path(os.environ.get("FORGE_HOME") or Path.home() / ".forge").expanduser()


def config_file() -> Path | None:
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


def load_config(flags: dict[str, Any] | None = None,
                sections: Mapping[str, type] | None = None) -> ForgeConfig:
    """Build the effective configuration; ``flags`` are command-line values (``None`` = unset).

    ``sections`` maps section names to the dataclasses plugins declared; by default those of the
    plugin host already discovered (none before discovery; loading never discovers plugins).
    """
    sections = _declared() if sections is None else sections
    config = ForgeConfig()
    keys = _keys(config)

    def put(key: str, value: Any, from_text: bool, where: str, source: str) -> None:
        owner, hint = keys[key]
        setattr(owner, key, _coerce(key, value, hint, from_text, where))
        config.sources[key] = source

    path = config_file()
    if path is not None:
        for key, value in _read(path).items():
            if isinstance(value, dict):
                config.sections[key] = value
            elif key in keys:
                put(key, value, False, f"file {path}", f"file {path}")
            else:  # a typo must not be ignored silently
                raise ConfigError(f"{path}: unknown config key {key!r} "
                                  f"(known: {', '.join(sorted(keys))})")
    for key in keys:
        env_name = f"FORGE_{key.upper()}"
        if env_name in os.environ:
            put(key, os.environ[env_name], True, f"env {env_name}", f"env {env_name}")
    for key, value in (flags or {}).items():
        if value is not None and key in keys:
            put(key, value, False, f"--{key.replace('_', '-')}", "command line")
    for key, allowed in (("log_format", LOG_FORMATS), ("log_level", LOG_LEVELS)):
        if str(getattr(config, key)).lower() not in allowed:
            raise ConfigError(f"config key {key!r} ({config.sources.get(key)}): expected one "
                              f"of {', '.join(allowed)}, got {getattr(config, key)!r}")
    for name, schema in sections.items():
        config.sections[name] = _build_section(config, name, schema, path)
    return config


def _build_section(config: ForgeConfig, name: str, schema: type, path: Path | None) -> Any:
    """Instantiate a declared section: dataclass defaults < file ``[name]`` < env
    ``FORGE_<NAME>_<FIELD>``; every value type-checked, unknown keys rejected."""
    raw = config.sections.get(name, {})
    hints = typing.get_type_hints(schema)
    known = {f.name for f in dataclasses.fields(schema)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown key {name}.{key} "
                              f"(known: {', '.join(sorted(known)) or 'none'})")
        values[key] = _coerce(f"{name}.{key}", value, hints[key], False, f"file {path}")
        config.sources[f"{name}.{key}"] = f"file {path}"
    for key in known:
        env_name = f"FORGE_{name.upper().replace('-', '_')}_{key.upper()}"
        if env_name in os.environ:
            values[key] = _coerce(f"{name}.{key}", os.environ[env_name], hints[key], True,
                                  f"env {env_name}")
            config.sources[f"{name}.{key}"] = f"env {env_name}"
    try:
        return schema(**values)
    except TypeError as exc:  # a field without default left unset
        raise ConfigError(f"config section [{name}]: {exc}") from None
