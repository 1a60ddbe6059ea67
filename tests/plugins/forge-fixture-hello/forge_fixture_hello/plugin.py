"""Hook implementations of forge-fixture-hello: a ``hello`` tool, ``forge hello`` and a
``[hello]`` config section."""

from __future__ import annotations

from dataclasses import dataclass

import click

from forge_kernel import hookimpl
from forge_kernel.interfaces.tool import Tool


@dataclass(slots=True)
class HelloSettings:
    """The ``[hello]`` config section (env: ``FORGE_HELLO_GREETING``, ...)."""

    greeting: str = "Hello"
    excited: bool = False


class HelloTool(Tool):
    """Greets someone by name."""

    name = "hello"
    description = "Greet a person by name."
    parameters = {
        "type": "object",
        "properties": {"name": {"type": "string", "description": "who to greet"}},
        "required": ["name"],
    }

    def __init__(self, greeting: str = "Hello", excited: bool = False) -> None:
        self.greeting = greeting
        self.excited = excited

    def __call__(self, name: str = "world") -> str:
        return f"{self.greeting}, {name}{'!' if self.excited else '.'}"


@hookimpl
def forge_register_tools(register):
    register("hello", HelloTool)


@hookimpl
def forge_register_config_sections(register):
    register("hello", HelloSettings)


@hookimpl
def forge_register_commands(cli):
    @cli.command("hello")
    @click.argument("name", default="world")
    def hello(name: str) -> None:
        """Say hello (from forge-fixture-hello)."""
        from forge_kernel.config import load_config
        from forge_kernel.plugins import get_host

        settings = load_config().section("hello")
        tool = get_host().registry.create("tool", "hello", settings.greeting, settings.excited)
        click.echo(tool(name=name))
