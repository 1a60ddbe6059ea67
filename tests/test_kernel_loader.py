"""The plugin loader (``forge_kernel.plugins``), in-process and fast.

Plugins here are real distributions — a ``.dist-info`` with ``METADATA`` and
``entry_points.txt`` next to the plugin's module — in a temporary directory, and discovery reads
them through ``importlib.metadata`` exactly as it reads installed ones; only the search path is
narrowed to that directory so the development environment's plugins stay out of the way.
(``tests/test_kernel_entrypoints.py`` does the same with ``pip install``-ed plugins.)
"""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from forge_kernel import plugins as loader
from forge_kernel.errors import DuplicateImplementationError, PluginError
from forge_kernel.plugins import PluginHost

TOOL = """
from forge_kernel import hookimpl

@hookimpl
def forge_register_tools(register):
    register({tool!r}, lambda: {tool!r})
"""
BROKEN = "raise ImportError('needs libfoo 2.0')\n"


class FakeSite:
    """A directory of fake installed distributions that discovery is pointed at."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.modules: list[str] = []

    def add(self, dist: str, ep_name: str, source: str, version: str = "1.0") -> str:
        """Install distribution ``dist`` whose entry point ``ep_name`` is a module holding
        ``source``; returns the module name (unique, so tests never share ``sys.modules``)."""
        module = f"fake_{dist.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        (self.path / f"{module}.py").write_text(textwrap.dedent(source))
        info = self.path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[forge_kernel]\n{ep_name} = {module}\n")
        self.modules.append(module)
        return module

    def entry_points(self, group: str) -> list[importlib.metadata.EntryPoint]:
        """``importlib.metadata.entry_points(group=...)`` restricted to this directory."""
        return [ep for dist in importlib.metadata.distributions(path=[str(self.path)])
                for ep in dist.entry_points if ep.group == group]


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty :class:`FakeSite`, importable, the only place discovery looks; no ``FORGE_*``
    selection variables set."""
    for name in ("FORGE_PLUGINS", "FORGE_DISABLE_PLUGINS", "FORGE_PLUGINS_STRICT"):
        monkeypatch.delenv(name, raising=False)
    fake = FakeSite(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(loader, "entry_points", fake.entry_points)
    yield fake
    for module in fake.modules:
        sys.modules.pop(module, None)


def discover(allow: str | None = None) -> PluginHost:
    """A fresh host after discovery."""
    host = PluginHost()
    host.discover(allow)
    return host


def statuses(host: PluginHost) -> dict[str, str]:
    """``{plugin name: status}``."""
    return {s.name: s.status for s in host.statuses}


@pytest.fixture()
def three(site: FakeSite) -> FakeSite:
    """Plugins ``alpha`` (dist forge-alpha), ``beta`` (forge-beta), ``gamma`` (forge_gamma),
    each registering a tool of its own name."""
    site.add("forge-alpha", "alpha", TOOL.format(tool="alpha"), "1.0")
    site.add("forge-beta", "beta", TOOL.format(tool="beta"), "2.0")
    site.add("forge_gamma", "gamma", TOOL.format(tool="gamma"), "3.0")
    return site


def test_all_plugins_load_when_nothing_is_selected(three: FakeSite, capsys) -> None:
    host = discover()
    assert statuses(host) == {"alpha": "loaded", "beta": "loaded", "gamma": "loaded"}
    assert host.registry.names("tool") == ["alpha", "beta", "gamma"]
    beta = next(s for s in host.statuses if s.name == "beta")
    assert (beta.distribution, beta.version, beta.kinds) == ("forge-beta", "2.0", ["tool"])
    assert beta.hooks == ["forge_register_tools"]
    assert host.registry.create("tool", "beta") == "beta"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("allow", "loaded"), [
    ("alpha,gamma", {"alpha", "gamma"}),               # entry-point names
    ("forge-beta", {"beta"}),                          # distribution name
    ("FORGE_ALPHA, forge-gamma", {"alpha", "gamma"}),  # case, '_' and '-' alike, spaces
    ("", set()),                                       # empty: none
])
def test_allow_list(three: FakeSite, monkeypatch, allow: str, loaded: set[str]) -> None:
    monkeypatch.setenv("FORGE_PLUGINS", allow)
    host = discover()
    assert {n for n, s in statuses(host).items() if s == "loaded"} == loaded
    assert {n for n, s in statuses(host).items() if s == "disabled"} == {
        "alpha", "beta", "gamma"} - loaded
    assert host.registry.names("tool") == sorted(loaded)


def test_disabled_plugins_are_never_imported(three: FakeSite, monkeypatch) -> None:
    module = three.add("forge-boom", "boom", BROKEN)
    monkeypatch.setenv("FORGE_DISABLE_PLUGINS", "forge-boom,beta")
    host = discover()
    assert statuses(host) == {"alpha": "loaded", "beta": "disabled", "boom": "disabled",
                              "gamma": "loaded"}
    assert module not in sys.modules
    assert host.pm.get_plugin("beta") is None and "beta" not in host.registry.names("tool")


def test_argument_overrides_env_and_block_list_wins(three: FakeSite, monkeypatch) -> None:
    monkeypatch.setenv("FORGE_PLUGINS", "alpha")
    monkeypatch.setenv("FORGE_DISABLE_PLUGINS", "gamma")
    host = discover("beta,gamma")  # forge --plugins beta,gamma
    assert statuses(host) == {"alpha": "disabled", "beta": "loaded", "gamma": "disabled"}


def test_unmatched_selector_warns(three: FakeSite, monkeypatch, capsys) -> None:
    monkeypatch.setenv("FORGE_PLUGINS", "alpha,nope")
    monkeypatch.setenv("FORGE_DISABLE_PLUGINS", "forge-missing")
    host = discover()
    assert statuses(host)["alpha"] == "loaded"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert "'forge-missing'" in err[0] and "'nope'" in err[1]
    assert all("matches no installed plugin" in line for line in err)


def test_broken_plugin_is_reported_on_one_line_and_skipped(three: FakeSite, capsys) -> None:
    three.add("forge-boom", "boom", "raise RuntimeError('bad\\n  multi-line\\n  message')",
              "0.3")
    host = discover()
    assert statuses(host) == {"alpha": "loaded", "beta": "loaded", "boom": "failed",
                              "gamma": "loaded"}
    boom = next(s for s in host.statuses if s.name == "boom")
    assert boom.error == "RuntimeError: bad multi-line message"
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    for part in ("'boom'", "forge-boom", "0.3", "RuntimeError: bad multi-line message"):
        assert part in lines[0]


@pytest.mark.parametrize("how", ["FORGE_PLUGINS=boom", "FORGE_PLUGINS=forge-boom",
                                 "--plugins", "FORGE_PLUGINS_STRICT=1"])
def test_requested_or_strict_failure_is_a_hard_error(three: FakeSite, monkeypatch,
                                                     how: str) -> None:
    three.add("forge-boom", "boom", BROKEN)
    allow = None
    if how == "--plugins":
        allow = "alpha,boom"
    else:
        name, value = how.split("=")
        monkeypatch.setenv(name, value)
    with pytest.raises(PluginError) as info:
        discover(allow)
    message = str(info.value)
    assert "'boom'" in message and "forge-boom" in message and "needs libfoo 2.0" in message
    assert ("STRICT" in message) == ("STRICT" in how)
    assert isinstance(info.value.__cause__, ImportError)


def test_failure_during_registration_is_rolled_back(three: FakeSite, capsys) -> None:
    three.add("forge-half", "half", """
        from dataclasses import dataclass
        from forge_kernel import hookimpl

        @dataclass
        class Settings:
            level: int = 1

        @hookimpl
        def forge_register_config_sections(register):
            register("half", Settings)

        @hookimpl
        def forge_register_tools(register):
            register("half-tool", object)
            raise ValueError("second tool is broken")

        @hookimpl
        def forge_register_commands(cli):
            pass
    """)
    host = discover()
    assert statuses(host)["half"] == "failed"
    assert "ValueError: second tool is broken" in capsys.readouterr().err
    assert "half-tool" not in host.registry.names("tool")
    assert host.registry.kinds_of("half") == []
    assert "half" not in host.config_sections
    assert host.pm.get_plugin("half") is None
    assert host.hook.forge_register_commands.get_hookimpls() == []
    assert host.registry.names("tool") == ["alpha", "beta", "gamma"]


def test_misspelled_hook_fails_the_plugin(site: FakeSite) -> None:
    site.add("forge-typo", "typo", """
        from forge_kernel import hookimpl

        @hookimpl
        def forge_register_tool(register):
            register("x", object)
    """)
    host = discover()
    typo = host.statuses[0]
    assert typo.status == "failed" and "forge_register_tool" in typo.error
    assert host.pm.get_plugin("typo") is None


def test_duplicate_implementation_names_both_plugins(site: FakeSite, capsys,
                                                     monkeypatch) -> None:
    site.add("forge-one", "one", TOOL.format(tool="search"))
    site.add("forge-two", "two", TOOL.format(tool="search"))
    host = discover()
    assert statuses(host) == {"one": "loaded", "two": "failed"}
    two = host.statuses[1]
    assert "DuplicateImplementationError" in two.error
    assert "'one'" in two.error and "'two'" in two.error and "'search'" in two.error
    assert host.registry.get("tool", "search").plugin == "one"  # the first one is intact
    assert "'search'" in capsys.readouterr().err
    monkeypatch.setenv("FORGE_PLUGINS_STRICT", "1")
    with pytest.raises(PluginError, match="both plugin 'one' and plugin 'two'"):
        discover()


def test_same_entry_point_name_in_two_distributions(site: FakeSite) -> None:
    site.add("forge-aaa", "dup", TOOL.format(tool="a"))
    site.add("forge-bbb", "dup", TOOL.format(tool="b"))
    host = discover()
    assert [s.status for s in host.statuses] == ["loaded", "failed"]
    error = host.statuses[1].error
    assert "forge-aaa" in error and "forge-bbb" in error and "\n" not in error
    assert host.statuses[0].distribution == "forge-aaa"  # ties are broken by distribution
    assert host.registry.names("tool") == ["a"]


def test_duplicate_names_through_register_plugin(register_plugin, forge_host) -> None:
    from forge_kernel import hookimpl

    class Backend:
        def __init__(self, name: str) -> None:
            self.name = name

        @hookimpl
        def forge_register_backends(self, register) -> None:
            register("fast", lambda: self.name)

    register_plugin(Backend("one"), name="one")
    with pytest.raises(DuplicateImplementationError, match="'one'.*'two'"):
        register_plugin(Backend("two"), name="two")
    assert forge_host.pm.get_plugin("two") is None
    assert forge_host.registry.create("backend", "fast") == "one"


def test_registration_hooks_go_through_pluggy(register_plugin, forge_hook_recorder) -> None:
    from forge_kernel import hookimpl

    class Tools:
        @hookimpl
        def forge_register_tools(self, register) -> None:
            register("echo", lambda: "echo")

    status = register_plugin(Tools(), name="tools")
    assert status.kinds == ["tool"]
    (call,) = forge_hook_recorder.of("forge_register_tools")
    assert call.plugins == ["tools"] and call.error is None


def test_restrict_for_serve_plugins_option(three: FakeSite) -> None:
    three.add("forge-boom", "boom", BROKEN)
    host = discover()
    host.restrict("alpha,forge-gamma")  # forge serve --plugins alpha,forge-gamma
    assert statuses(host) == {"alpha": "loaded", "beta": "disabled", "boom": "failed",
                              "gamma": "loaded"}
    assert host.registry.names("tool") == ["alpha", "gamma"]
    with pytest.raises(PluginError, match="not installed: nope"):
        discover().restrict("alpha,nope")
    with pytest.raises(PluginError, match="'boom' was requested but failed"):
        discover().restrict("boom")


def test_select_plugins_after_discovery_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(loader, "_host", PluginHost())
    monkeypatch.setattr(loader, "_allow_override", None)
    with pytest.raises(PluginError, match="already discovered"):
        loader.select_plugins("alpha")
