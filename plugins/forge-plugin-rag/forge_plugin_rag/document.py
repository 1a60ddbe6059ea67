"""What loaders produce: a document as an ordered list of blocks with their page and heading."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Block:
    """One paragraph-like unit of text (a paragraph, list item, table row, code block)."""

    text: str
    page: int | None = None
    """1-based page number (PDF); ``None`` where the format has no pages."""
    heading: str | None = None
    """The nearest heading above the block (Markdown, HTML, DOCX), ``None`` before any."""


@dataclass(slots=True)
class Document:
    """A loaded file: where it came from, its type, its content hash and its blocks."""

    source: str
    """Identity in a collection (the resolved path, or the uploaded file's name)."""
    name: str
    kind: str
    """``pdf``, ``docx``, ``markdown``, ``html`` or ``text``."""
    sha256: str
    size: int
    blocks: list[Block] = field(default_factory=list)
    pages: int | None = None
