"""The pluggy markers of forge-kernel.

Plugins decorate their hook implementations with :data:`hookimpl`::

    from forge_kernel import hookimpl

    @hookimpl
    def forge_register_backends(register):
        register("mybackend", MyBackend)
"""

import pluggy

PROJECT_NAME = "forge_kernel"
"""pluggy project name and entry-point group under which plugins are discovered."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
