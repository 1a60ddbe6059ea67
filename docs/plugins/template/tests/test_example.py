"""Tests of forge-plugin-example. Run ``pytest`` after ``pip install -e ".[test]"``.

The fixtures (``forge_host``, ``register_plugin``, ``forge_hook_recorder``, ``forge_cli``) come
from ``forge_kernel.testing``, which forge-kernel registers as a pytest plugin: no conftest
needed.
"""

from __future__ import annotations

import pytest
from forge_plugin_example import plugin
from forge_plugin_example.tool import WordCountTool

from forge_kernel.plugins import PluginHost
from forge_kernel.testing.conformance.tool import ToolConformance


class TestWordCountTool(ToolConformance):
    """The Tool contract: a function name, a description, a JSON-schema, a text result."""

    example_arguments = {"text": "one two three"}

    @pytest.fixture()
    def tool(self):
        return WordCountTool()


def test_counts_words():
    assert WordCountTool()(text="  one two\nthree ") == "3"
    assert WordCountTool()(text="") == "0"


def test_registers_the_tool(register_plugin, forge_host, forge_hook_recorder):
    status = register_plugin(plugin, name="example")
    assert status.kinds == ["tool"]
    assert status.hooks == ["forge_register_commands", "forge_register_tools"]
    assert forge_host.registry.get("tool", "word_count").plugin == "example"
    (call,) = forge_hook_recorder.of("forge_register_tools")
    assert call.plugins == ["example"]


def test_command(register_plugin, forge_cli):
    register_plugin(plugin, name="example")
    result = forge_cli("word-count", "one two three")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "3\n"


def test_installed_entry_point_loads():
    """Real discovery, as ``forge`` does it; needs the distribution installed."""
    host = PluginHost()
    host.discover(allow="example")
    (status,) = [s for s in host.statuses if s.name == "example"]
    assert status.status == "loaded", status.error
    assert status.distribution == "forge-plugin-example"
    assert host.registry.get("tool", "word_count").plugin == "example"
