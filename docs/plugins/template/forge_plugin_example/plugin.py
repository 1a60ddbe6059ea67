"""Hook implementations of forge-plugin-example.

``forge`` imports this module at start-up for every command, so keep it cheap: import heavy
dependencies inside factories and command bodies, never at module level.
"""

from __future__ import annotations

import click

from forge_kernel import hookimpl


def _create_word_count():
    """Factory for ``registry.create("tool", "word_count")``."""
    from forge_plugin_example.tool import WordCountTool

    return WordCountTool()


@hookimpl
def forge_register_tools(register) -> None:
    """Offer the ``word_count`` tool."""
    register("word_count", _create_word_count)


@hookimpl
def forge_register_commands(cli) -> None:
    """Add ``forge word-count TEXT``."""

    @cli.command("word-count")
    @click.argument("text")
    def word_count(text: str) -> None:
        """Count the words of TEXT (forge-plugin-example)."""
        from forge_kernel.plugins import get_host

        tool = get_host().registry.create("tool", "word_count")
        click.echo(tool(text=text))
