"""pytest fixtures of the forge test kit (loaded by :mod:`forge_kernel.testing.plugin`).

* ``forge_host`` — a fresh :class:`~forge_kernel.plugins.PluginHost` with autoload off (no entry
  point is imported), installed as the process-wide host for the test;
* ``register_plugin`` — ``register_plugin(obj, name=None)`` registers a plugin object (module,
  class instance) into ``forge_host`` for one test; it is unregistered afterwards;
* ``forge_hook_recorder`` — records every hook call made through ``forge_host``;
* ``forge_cli`` — ``forge_cli("plugins", "--json")`` runs the ``forge`` group in-process with
  click's ``CliRunner``, an isolated ``FORGE_HOME`` and ``forge_host`` as the plugin host.

Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from forge_kernel.plugins import PluginHost, PluginStatus, install_host


@pytest.fixture()
def forge_host() -> Iterator[PluginHost]:
    """A fresh plugin host without entry-point discovery, process-wide for this test."""
    host = PluginHost()
    previous = install_host(host)
    try:
        yield host
    finally:
        install_host(previous)


@pytest.fixture()
def register_plugin(forge_host: PluginHost) -> Iterator[Callable[..., PluginStatus]]:
    """``register_plugin(plugin, name=None, distribution="-", version="-")``: register a plugin
    object into ``forge_host`` for this test only; returns its status (kinds, hooks)."""
    names: list[str] = []

    def register(plugin: object, name: str | None = None, distribution: str = "-",
                 version: str = "-") -> PluginStatus:
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        status = forge_host.add_plugin(plugin, name, distribution, version)
        names.append(name)
        return status

    yield register
    for name in reversed(names):
        forge_host.unregister(name)
        forge_host.statuses[:] = [s for s in forge_host.statuses if s.name != name]


@dataclass(slots=True)
class HookCall:
    """One recorded hook call: hook name, keyword arguments, and the implementations' results."""

    name: str
    kwargs: dict[str, Any]
    plugins: list[str]
    results: list[Any] | None = None
    error: BaseException | None = None


@dataclass(slots=True)
class HookRecorder:
    """Every hook call made through one host's ``host.hook`` while recording."""

    calls: list[HookCall] = field(default_factory=list)

    def names(self) -> list[str]:
        """Hook names in call order."""
        return [call.name for call in self.calls]

    def of(self, name: str) -> list[HookCall]:
        """The calls of hook ``name``."""
        return [call for call in self.calls if call.name == name]

    def clear(self) -> None:
        self.calls.clear()


@pytest.fixture()
def forge_hook_recorder(forge_host: PluginHost) -> Iterator[HookRecorder]:
    """Record the hook calls made through ``forge_host.hook`` during the test."""
    recorder = HookRecorder()
    pending: list[HookCall] = []

    def before(hook_name: str, impls: list, kwargs: dict[str, Any]) -> None:
        call = HookCall(hook_name, dict(kwargs), [impl.plugin_name for impl in impls])
        pending.append(call)
        recorder.calls.append(call)

    def after(outcome: Any, hook_name: str, impls: list, kwargs: dict[str, Any]) -> None:
        call = pending.pop()
        call.error = outcome.exception
        call.results = None if outcome.exception else outcome.get_result()

    undo = forge_host.pm.add_hookcall_monitoring(before, after)
    try:
        yield recorder
    finally:
        undo()


@dataclass(slots=True)
class CliResult:
    """What one ``forge`` invocation did."""

    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    @property
    def output(self) -> str:
        return self.stdout


@pytest.fixture()
def forge_cli(forge_host: PluginHost, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """``forge_cli(*args, env=None, input=None)`` runs ``forge ARGS`` in-process against
    ``forge_host`` with ``FORGE_HOME`` set to a fresh temporary directory."""
    from click.testing import CliRunner

    from forge_kernel.cli import main

    home = tmp_path / "forge-home"
    home.mkdir()
    monkeypatch.setenv("FORGE_HOME", str(home))
    monkeypatch.delenv("FORGE_CONFIG", raising=False)

    def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None
               ) -> CliResult:
        try:
            runner = CliRunner(mix_stderr=False)  # click < 8.2
        except TypeError:
            runner = CliRunner()
        result = runner.invoke(main, list(args), env=env, input=input, catch_exceptions=True)
        exception = None if isinstance(result.exception, SystemExit) else result.exception
        return CliResult(result.exit_code, result.stdout, result.stderr, exception)

    return invoke
