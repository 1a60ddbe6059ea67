"""The pluggy markers: plugins decorate hook implementations with ``@hookimpl``."""

import pluggy

PROJECT_NAME = "forge_kernel"
"""pluggy project name and entry-point group under which plugins are discovered."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
