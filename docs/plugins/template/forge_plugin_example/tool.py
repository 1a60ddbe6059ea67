"""The ``word_count`` tool."""

from __future__ import annotations

from typing import Any

from forge_kernel.interfaces.tool import Tool


class WordCountTool(Tool):
    """Counts whitespace-separated words."""

    name = "word_count"
    description = "Count the words in a text."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"text": {"type": "string", "description": "the text to count"}},
        "required": ["text"],
    }

    def __call__(self, text: str = "") -> str:
        return str(len(text.split()))
