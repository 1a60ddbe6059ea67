"""Hook implementations: registers the ``continuous`` scheduler."""

from __future__ import annotations

from forge_kernel import hookimpl


def _create(config, kv_cache):
    from forge_plugin_scheduler.continuous import ContinuousScheduler

    return ContinuousScheduler(config, kv_cache)


@hookimpl
def forge_register_schedulers(register) -> None:
    register("continuous", _create)
