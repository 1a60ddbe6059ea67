"""The ``forge`` command line of the kernel itself.

In-process tests use the test kit's ``forge_cli`` (an empty plugin host, plugins added with
``register_plugin``); the "only forge-kernel is installed" tests run ``forge`` in a hermetic
``python -S`` site (``tests/kernel_env.py``); the torch checks run in the development
environment, where torch and every plugin of the repository *are* installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from kernel_env import make_base_site, run_forge

from forge_kernel import hookimpl
from forge_kernel.cli import BUILTIN_COMMANDS, FEATURE_PLUGINS


class Greeter:
    """A plugin with a tool and a ``forge greet`` command."""

    @hookimpl
    def forge_register_tools(self, register) -> None:
        register("greet", lambda: (lambda name: f"hi {name}"))

    @hookimpl
    def forge_register_commands(self, cli: click.Group) -> None:
        @cli.command("greet")
        @click.argument("name")
        def greet(name: str) -> None:
            """Greet NAME."""
            from forge_kernel.plugins import get_host

            click.echo(get_host().registry.create("tool", "greet")(name))


class BadCommands:
    """A plugin whose command registration raises."""

    @hookimpl
    def forge_register_commands(self, cli: click.Group) -> None:
        raise RuntimeError("click is too old")


def test_help_lists_builtin_feature_and_plugin_commands(forge_cli, register_plugin) -> None:
    result = forge_cli("--help")
    assert result.exit_code == 0
    for name in [*BUILTIN_COMMANDS, *FEATURE_PLUGINS]:
        assert f"  {name} " in result.stdout
    assert "greet" not in result.stdout
    register_plugin(Greeter(), name="greeter")
    assert "Greet NAME." in forge_cli("--help").stdout
    assert forge_cli("greet", "bob").stdout == "hi bob\n"


def test_a_plugin_failing_to_add_commands_is_reported(forge_cli, register_plugin) -> None:
    register_plugin(BadCommands(), name="bad")
    register_plugin(Greeter(), name="greeter")
    result = forge_cli("greet", "ann")
    assert (result.exit_code, result.stdout) == (0, "hi ann\n")
    assert "plugin 'bad' failed to add its commands: RuntimeError: click is too old" in (
        result.stderr)


def test_plugins_table_json_and_version(forge_cli, register_plugin) -> None:
    empty = forge_cli("plugins")
    assert empty.exit_code == 0 and "no plugins installed" in empty.stdout
    assert json.loads(forge_cli("plugins", "--json").stdout) == []
    register_plugin(Greeter(), name="greeter", distribution="forge-greeter", version="2.5.0")
    table = forge_cli("plugins").stdout.splitlines()
    assert table[0].split() == ["NAME", "DISTRIBUTION", "VERSION", "PROVIDES", "STATUS"]
    assert table[1].split() == ["greeter", "forge-greeter", "2.5.0", "tool,", "commands",
                                "loaded"]
    (entry,) = json.loads(forge_cli("plugins", "--json").stdout)
    assert entry == {"name": "greeter", "distribution": "forge-greeter", "version": "2.5.0",
                     "status": "loaded", "kinds": ["tool"],
                     "hooks": ["forge_register_commands", "forge_register_tools"],
                     "error": None}
    version = forge_cli("--version")
    assert version.exit_code == 0
    assert version.stdout.splitlines() == ["forge-kernel 0.1.0", "  forge-greeter 2.5.0"]


@pytest.mark.parametrize("command", sorted(FEATURE_PLUGINS))
def test_missing_feature_plugin_names_what_to_install(forge_cli, command: str) -> None:
    result = forge_cli(command, "--port", "1")
    assert result.exit_code == 2
    dist = FEATURE_PLUGINS[command][0]
    assert f"`forge {command}` needs the plugin {dist}" in result.stderr
    assert f"pip install {dist}" in result.stderr


@pytest.fixture(scope="module")
def kernel_only(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A site where only forge-kernel (and its dependencies) is installed."""
    return [make_base_site(tmp_path_factory.mktemp("kernel-only") / "site")]


def test_kernel_only_environment(kernel_only: list[Path], tmp_path: Path) -> None:
    def forge(*args: str) -> subprocess.CompletedProcess[str]:
        return run_forge(kernel_only, *args, home=tmp_path)

    help_ = forge("--help")
    assert (help_.returncode, help_.stderr) == (0, "")
    assert "serve" in help_.stdout and "plugins" in help_.stdout
    plugins = forge("plugins", "--json")
    assert (plugins.returncode, json.loads(plugins.stdout)) == (0, [])
    assert "no plugins installed" in forge("plugins").stdout
    assert forge("--version").stdout == "forge-kernel 0.1.0\n"
    for args, dist in [(("serve",), "forge-plugin-openai"), (("keys", "list"), "forge-plugin-auth"),
                       (("run", "hi"), "forge-plugin-run")]:
        result = forge(*args)
        assert result.returncode != 0, args
        assert f"pip install {dist}" in result.stderr, args
        assert "Traceback" not in result.stderr, args


def _dev_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with the development environment's Python (torch and every plugin of the
    repository installed), without ``FORGE_*`` variables from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}
    return subprocess.run([sys.executable, *args, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)


def test_help_and_plugins_never_import_torch() -> None:
    code = """if True:
        import json, sys
        from forge_kernel.cli import main
        from forge_kernel.plugins import get_host
        for args in (["--help"], ["plugins"], ["plugins", "--json"], ["--version"]):
            try:
                main(args, prog_name="forge")
            except SystemExit as exc:  # plugins: 1 when cuda/metal cannot run here
                assert not exc.code or (args[0] == "plugins" and exc.code == 1), (args, exc.code)
        heavy = [m for m in ("torch", "numpy", "transformers", "fastapi") if m in sys.modules]
        loaded = [s.name for s in get_host().statuses if s.status == "loaded"]
        print("CHECK", json.dumps({"heavy": heavy, "loaded": loaded}), file=sys.stderr)
    """
    result = _dev_python(code)
    assert result.returncode == 0, result.stderr
    (check,) = [json.loads(line[6:]) for line in result.stderr.splitlines()
                if line.startswith("CHECK ")]
    assert check["heavy"] == []
    assert len(check["loaded"]) >= 3, "the repository's plugins are installed in the dev venv"


def test_importing_the_cli_never_imports_torch() -> None:
    result = _dev_python("import forge_kernel.cli", "-X", "importtime")
    assert result.returncode == 0
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    assert "forge_kernel.cli" in imported
    assert not [name for name in imported if name.split(".")[0] == "torch"]


def test_feature_plugins_name_distributions_of_this_repository() -> None:
    repo = Path(__file__).resolve().parents[1]
    for command, (dist, _) in FEATURE_PLUGINS.items():
        assert (repo / "plugins" / dist / "pyproject.toml").is_file(), (command, dist)
