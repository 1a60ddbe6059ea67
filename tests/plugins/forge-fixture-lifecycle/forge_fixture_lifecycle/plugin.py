"""Hook implementations of forge-fixture-lifecycle.

Each lifecycle hook appends one JSON line to ``[lifecycle] log`` (env ``FORGE_LIFECYCLE_LOG``);
``[lifecycle] refuse`` (env ``FORGE_LIFECYCLE_REFUSE``) makes ``forge_startup`` refuse start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from forge_kernel import hookimpl
from forge_kernel.errors import ConfigError, StartupRefused


@dataclass(slots=True)
class LifecycleSettings:
    """The ``[lifecycle]`` config section."""

    log: str | None = None
    refuse: str | None = None


settings = LifecycleSettings()


def record(event: str, **details) -> None:
    if settings.log:
        with open(settings.log, "a") as log:
            log.write(json.dumps({"event": event, **details}) + "\n")


@hookimpl
def forge_register_config_sections(register):
    register("lifecycle", LifecycleSettings)


@hookimpl
def forge_configure(config):
    global settings
    settings = config.section("lifecycle")
    if settings.refuse is not None and not settings.refuse.strip():
        raise ConfigError("lifecycle.refuse must be a reason, not blank")
    record("configure", model=config.engine.model, kv_cache=config.engine.kv_cache)


@hookimpl
def forge_startup(context):
    record("startup", model_name=context.model_name, components=context.components)
    if settings.refuse:
        raise StartupRefused(settings.refuse)


@hookimpl
def forge_shutdown(context):
    record("shutdown", model_name=context.model_name)
