"""Configuration: defaults < file < environment (``FORGE_*``) < command-line flags.

The file is ``$FORGE_CONFIG`` or ``$FORGE_HOME/config.{toml,yaml,yml,json}`` (``FORGE_HOME``
defaults to ``~/.forge``). Top-level keys are :class:`ForgeConfig` fields; tables/mappings
are per-plugin sections, read with :meth:`ForgeConfig.section`. Every value remembers where it
came from (``forge config`` prints it); a value of the wrong type is a :class:`ConfigError`
naming the key and the expected type.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge_kernel.errors import ConfigError

SECRET_FIELDS = frozenset({"api_key"})


@dataclass(slots=True)
class ForgeConfig:
    """Core settings shared by the commands (plugins add sections)."""

    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None
    backend: str = "cpu"
    kv_cache: str = "paged"
    scheduler: str = "continuous"
    max_batch_size: int = 64
    max_prefill_tokens: int = 512
    block_size: int = 16
    num_blocks: int | None = None
    threads: int | None = None
    max_model_len: int | None = None
    api_key: str | None = None
    log_format: str = "auto"
    log_level: str = "info"
    plugins: str | None = None
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
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
        for f in _fields():
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            rows.append((f.name, value, self.sources.get(f.name, "default")))
        for section, values in self.sections.items():
            items = (values.items() if isinstance(values, dict)
                     else ((f.name, getattr(values, f.name)) for f in dataclasses.fields(values)))
            for key, value in items:
                if _is_secret(key) and value:
                    value = "***"
                rows.append((f"{section}.{key}", value,
                             self.sources.get(f"{section}.{key}", "default")))
        return rows


def _is_secret(key: str) -> bool:
    from forge_kernel.log import is_secret_key  # masks hf_token, not max_tokens

    return key in SECRET_FIELDS or is_secret_key(key)


def _fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(ForgeConfig) if f.name not in ("sections", "sources")]


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(ForgeConfig)


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
                sections: dict[str, type] | None = None) -> ForgeConfig:
    """Build the effective configuration; ``flags`` are command-line values (``None`` = unset).

    ``sections`` maps section names to the dataclasses plugins declared; by default those of the
    process-wide plugin host (:func:`forge_kernel.plugins.get_host`).
    """
    if sections is None:
        from forge_kernel.plugins import get_host

        sections = {name: schema for name, (schema, _) in get_host().config_sections.items()}
    config = ForgeConfig()
    hints = _hints()
    names = {f.name for f in _fields()}
    path = config_file()
    if path is not None:
        for key, value in _read(path).items():
            if isinstance(value, dict):
                config.sections[key] = value
                continue
            if key not in names:  # a typo must not be ignored silently
                raise ConfigError(f"{path}: unknown config key {key!r} "
                                  f"(known: {', '.join(sorted(names))})")
            setattr(config, key, _coerce(key, value, hints[key], False, f"file {path}"))
            config.sources[key] = f"file {path}"
    for key in names:
        env_name = f"FORGE_{key.upper()}"
        if env_name in os.environ:
            setattr(config, key, _coerce(key, os.environ[env_name], hints[key], True,
                                         f"env {env_name}"))
            config.sources[key] = f"env {env_name}"
    for key, value in (flags or {}).items():
        if value is not None and key in names:
            setattr(config, key, _coerce(key, value, hints[key], False,
                                         f"--{key.replace('_', '-')}"))
            config.sources[key] = "command line"
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
