"""``ToolConformance``: the contract of :class:`~forge_kernel.interfaces.tool.Tool`.

Usage::

    class TestClock(ToolConformance):
        @pytest.fixture()
        def tool(self):
            return ClockTool()

        example_arguments = {"timezone": "UTC"}   # a valid call, used by test_call_returns_text
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from forge_kernel.interfaces.tool import Tool


class ToolConformance:
    """Subclass and provide a ``tool`` fixture; set ``example_arguments`` to a valid call."""

    example_arguments: dict[str, Any] | None = None

    @pytest.fixture()
    def tool(self) -> Tool:
        raise NotImplementedError("provide a `tool` fixture returning the tool under test")

    def test_is_a_tool(self, tool: Tool) -> None:
        assert isinstance(tool, Tool)

    def test_name_is_a_function_name(self, tool: Tool) -> None:
        # OpenAI function names: ^[a-zA-Z0-9_-]{1,64}$
        assert isinstance(tool.name, str) and 0 < len(tool.name) <= 64
        assert all(c.isalnum() or c in "_-" for c in tool.name), tool.name

    def test_description(self, tool: Tool) -> None:
        assert isinstance(tool.description, str) and tool.description.strip()

    def test_parameters_are_a_json_object_schema(self, tool: Tool) -> None:
        schema = tool.parameters
        json.dumps(schema)  # must be serialisable as sent to the model
        assert schema.get("type") == "object"
        assert isinstance(schema.get("properties", {}), dict)
        for required in schema.get("required", []):
            assert required in schema.get("properties", {}), f"required {required!r} undeclared"

    def test_call_returns_text(self, tool: Tool) -> None:
        if self.example_arguments is None:
            pytest.skip("set example_arguments to check a call")
        assert isinstance(tool(**self.example_arguments), str)
