"""pytest plugin (``pytest11`` entry point ``forge_kernel``): fixtures for testing forge and
its plugins (see :mod:`forge_kernel.testing.fixtures`). Importing it never imports torch."""

from __future__ import annotations

from forge_kernel.testing.fixtures import (  # noqa: F401 - fixtures registered by import
    forge_cli,
    forge_hook_recorder,
    forge_host,
    register_plugin,
)
