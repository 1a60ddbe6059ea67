"""Plugins discovered through real entry points, in a hermetic environment.

One module-scoped site holds forge-kernel plus, installed with a real ``pip install --no-deps
--no-build-isolation --target``: the fixture plugins ``forge-fixture-hello`` and
``forge-fixture-broken``, one plugin of the repository (``forge-plugin-scheduler``), the
``forge keys`` plugin (``forge-plugin-auth``) and a third party's plugin generated here with its
own ``pyproject.toml``. Every test runs ``forge`` in ``python -S`` against that site (see
``tests/kernel_env.py``), so discovery reads the ``entry_points.txt`` pip wrote.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from kernel_env import FIXTURE_PLUGINS, REPO, make_base_site, pip_install, run_forge

BROKEN_LINE = ("forge: plugin 'broken' (forge-fixture-broken 0.0.1) failed to load and was "
               "skipped: RuntimeError: forge-fixture-broken is broken on purpose")
THIRD_PARTY = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "acme-forge-tools"
        version = "0.4.2"
        requires-python = ">=3.11"
        dependencies = ["forge-kernel"]

        [project.entry-points.forge_kernel]
        acme = "acme_forge_tools.plugin"

        [tool.setuptools.packages.find]
        include = ["acme_forge_tools*"]
    """,
    "acme_forge_tools/__init__.py": "",
    "acme_forge_tools/plugin.py": """
        from dataclasses import dataclass

        import click

        from forge_kernel import hookimpl
        from forge_kernel.interfaces.tool import Tool


        @dataclass
        class AcmeSettings:
            volume: int = 1


        class Shout(Tool):
            name = "shout"
            description = "Upper-case some text."
            parameters = {"type": "object", "properties": {"text": {"type": "string"}}}

            def __init__(self, volume: int = 1) -> None:
                self.volume = volume

            def __call__(self, text: str = "") -> str:
                return text.upper() + "!" * self.volume


        @hookimpl
        def forge_register_tools(register):
            register("shout", Shout)


        @hookimpl
        def forge_register_config_sections(register):
            register("acme", AcmeSettings)


        @hookimpl
        def forge_register_commands(cli):
            @cli.command("shout")
            @click.argument("text")
            def shout(text):
                "Shout TEXT (from acme-forge-tools)."
                from forge_kernel.config import load_config
                from forge_kernel.plugins import get_host

                volume = load_config().section("acme").volume
                click.echo(get_host().registry.create("tool", "shout", volume)(text=text))
    """,
}


def write_project(root: Path, files: dict[str, str]) -> Path:
    """Write a project's ``files`` (relative path -> dedented text) under ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """``[base site, plugin site]``: forge-kernel, and the plugins pip installed next to it."""
    root = tmp_path_factory.mktemp("entrypoints")
    third_party = write_project(root / "acme-forge-tools", THIRD_PARTY)
    target = root / "plugins"
    pip_install(target, FIXTURE_PLUGINS / "forge-fixture-hello",
                FIXTURE_PLUGINS / "forge-fixture-broken", third_party,
                REPO / "plugins" / "forge-plugin-scheduler", REPO / "plugins" / "forge-plugin-auth")
    return [make_base_site(root / "base"), target]


@pytest.fixture()
def forge(sites: list[Path], tmp_path: Path):
    """``forge(*args, env=None)``: run ``forge`` in the hermetic site with a fresh
    ``FORGE_HOME`` (``tmp_path / "home"``)."""
    home = tmp_path / "home"
    home.mkdir()

    def run(*args: str, env: dict[str, str] | None = None):
        return run_forge(sites, *args, env=env, home=home)

    return run


def by_name(stdout: str) -> dict[str, dict]:
    """``forge plugins --json`` output keyed by plugin name."""
    return {entry["name"]: entry for entry in json.loads(stdout)}


def test_installed_plugins_are_discovered_with_versions_and_kinds(forge) -> None:
    result = forge("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = by_name(result.stdout)
    assert sorted(plugins) == ["acme", "auth", "broken", "hello", "scheduler"]
    expected = {  # name: (distribution, version, status, kinds)
        "acme": ("acme-forge-tools", "0.4.2", "loaded", ["tool"]),
        "auth": ("forge-plugin-auth", "0.1.0", "loaded", ["endpoint"]),
        "broken": ("forge-fixture-broken", "0.0.1", "failed", []),
        "hello": ("forge-fixture-hello", "1.2.3", "loaded", ["tool"]),
        "scheduler": ("forge-plugin-scheduler", "0.1.0", "loaded", ["scheduler"]),
    }
    for name, (dist, version, status, kinds) in expected.items():
        entry = plugins[name]
        assert (entry["distribution"], entry["version"], entry["status"], entry["kinds"]) == (
            dist, version, status, kinds), name
    assert "forge_register_commands" in plugins["acme"]["hooks"]
    assert plugins["broken"]["error"] == (
        "RuntimeError: forge-fixture-broken is broken on purpose")
    assert result.stderr.splitlines() == [BROKEN_LINE]


def test_plugins_table_and_version(forge) -> None:
    table = forge("plugins")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines()[1:]}
    assert "acme-forge-tools" in rows["acme"] and "0.4.2" in rows["acme"]
    assert "tool, commands, config_sections" in rows["acme"]
    assert rows["scheduler"].split()[1:] == ["forge-plugin-scheduler", "0.1.0", "scheduler",
                                             "loaded"]
    assert rows["broken"].endswith("failed: RuntimeError: forge-fixture-broken is broken on "
                                   "purpose")
    version = forge("--version")
    assert version.returncode == 0
    assert version.stdout.splitlines() == [
        "forge-kernel 0.1.0", "  acme-forge-tools 0.4.2", "  forge-plugin-auth 0.1.0",
        "  forge-fixture-broken 0.0.1 (failed)", "  forge-fixture-hello 1.2.3",
        "  forge-plugin-scheduler 0.1.0"]


def test_third_party_command_tool_and_config_section(forge, tmp_path: Path) -> None:
    assert forge("shout", "hi").stdout == "HI!\n"
    (tmp_path / "home" / "config.toml").write_text("[acme]\nvolume = 3\n")
    result = forge("shout", "hi")
    assert (result.returncode, result.stdout) == (0, "HI!!!\n"), result.stderr
    assert forge("shout", "hi", env={"FORGE_ACME_VOLUME": "2"}).stdout == "HI!!\n"
    bad = forge("shout", "hi", env={"FORGE_ACME_VOLUME": "loud"})
    assert bad.returncode != 0 and "FORGE_ACME_VOLUME" in bad.stderr and "int" in bad.stderr
    config = forge("config")
    assert "acme.volume" in config.stdout and "3" in config.stdout and "config.toml" in (
        config.stdout)


def test_fixture_hello_command_and_help(forge) -> None:
    result = forge("hello", "bob", env={"FORGE_HELLO_GREETING": "Hi",
                                        "FORGE_HELLO_EXCITED": "yes"})
    assert (result.returncode, result.stdout) == (0, "Hi, bob!\n"), result.stderr
    help_ = forge("--help")
    assert help_.returncode == 0
    commands = {line.split()[0] for line in help_.stdout.split("Commands:")[1].splitlines()
                if line.strip()}
    assert {"hello", "shout", "keys", "plugins", "serve"} <= commands
    assert "Manage API keys" in help_.stdout  # the real `forge keys`, not the placeholder
    assert help_.stderr.splitlines() == [BROKEN_LINE]


def test_allow_list_by_entry_point_and_distribution_name(forge) -> None:
    result = forge("plugins", "--json", env={"FORGE_PLUGINS": "hello,acme-forge-tools,nope"})
    statuses = {name: e["status"] for name, e in by_name(result.stdout).items()}
    assert statuses == {"acme": "loaded", "auth": "disabled", "broken": "disabled",
                        "hello": "loaded", "scheduler": "disabled"}
    # the broken plugin was not even imported; the unknown selector is warned about
    assert result.stderr.splitlines() == [
        "forge: warning: plugin selector 'nope' matches no installed plugin"]
    keys = forge("keys", "list", env={"FORGE_PLUGINS": "hello"})
    assert keys.returncode != 0 and "pip install forge-plugin-auth" in keys.stderr
    version = forge("--version", "--plugins", "scheduler")
    assert "  forge-fixture-hello 1.2.3 (disabled)" in version.stdout.splitlines()
    assert version.stderr == ""


def test_block_list_and_every_remaining_plugin_broken(forge) -> None:
    env = {"FORGE_DISABLE_PLUGINS": "hello,acme,forge-plugin-scheduler,forge_plugin_auth"}
    result = forge("plugins", "--json", env=env)
    statuses = {name: e["status"] for name, e in by_name(result.stdout).items()}
    assert statuses == {"acme": "disabled", "auth": "disabled", "broken": "failed",
                        "hello": "disabled", "scheduler": "disabled"}
    help_ = forge("--help", env=env)
    assert help_.returncode == 0 and "hello" not in help_.stdout
    assert help_.stderr.splitlines() == [BROKEN_LINE]


@pytest.mark.parametrize(("args", "env", "why"), [
    (("plugins",), {"FORGE_PLUGINS_STRICT": "1"}, "FORGE_PLUGINS_STRICT=1"),
    (("--help",), {"FORGE_PLUGINS_STRICT": "1"}, "FORGE_PLUGINS_STRICT=1"),
    (("--plugins", "hello,forge-fixture-broken", "plugins"), {}, "requested by name"),
])
def test_strict_or_requested_broken_plugin_is_a_hard_error(forge, args, env, why) -> None:
    result = forge(*args, env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: plugin 'broken' (forge-fixture-broken 0.0.1) failed")
    assert why in line and "RuntimeError: forge-fixture-broken is broken on purpose" in line


def test_serve_plugins_and_config_file_allow_lists_filter_before_import(forge, tmp_path) -> None:
    # `forge serve --plugins` is known before the command is resolved (resolving discovers
    # plugins), so the broken plugin is never imported: no "failed to load" line
    serve = forge("serve", "--plugins", "hello,scheduler")
    assert serve.returncode == 2 and "Traceback" not in serve.stderr
    assert "broken" not in serve.stderr
    assert "nothing to serve" in serve.stderr and "pip install forge-plugin-openai" in serve.stderr
    # the config file's allow-list applies to every command, also before any import
    (tmp_path / "home" / "config.toml").write_text('plugins = "hello"\n')
    listed = forge("plugins", "--json")
    statuses = {name: e["status"] for name, e in by_name(listed.stdout).items()}
    assert statuses == {"acme": "disabled", "auth": "disabled", "broken": "disabled",
                        "hello": "loaded", "scheduler": "disabled"}
    assert listed.stderr == ""
    # `forge --plugins` wins over the file
    flag = forge("--plugins", "acme", "plugins", "--json")
    assert {n for n, e in by_name(flag.stdout).items() if e["status"] == "loaded"} == {"acme"}
