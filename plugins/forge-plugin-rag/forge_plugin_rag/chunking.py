"""Token-based, structure-aware chunking.

Blocks are grouped into sections (consecutive blocks with the same page and heading); a chunk
never crosses a section, so every chunk has one page and one heading to cite. Inside a section
the text is tokenized once (with character offsets, so chunks are slices of the original text,
not detokenized wordpieces) and cut into windows of ``chunk_tokens`` tokens, each ending at a
paragraph boundary when one lies in the window's second half, and each next window starting
``overlap`` tokens before the previous one ended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import groupby

from forge_plugin_rag.document import Block

Offsets = Callable[[str], list[tuple[int, int]]]
"""``offsets(text)`` -> the ``(start, end)`` character span of each token (no special tokens)."""


@dataclass(slots=True)
class Chunk:
    """A piece of a document to embed and cite."""

    ordinal: int
    text: str
    page: int | None
    heading: str | None
    tokens: int

    def embedding_text(self) -> str:
        """What is embedded: the heading gives short chunks their topic."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text


def _windows(offsets: list[tuple[int, int]], starts: set[int], size: int, overlap: int
             ) -> Iterable[tuple[int, int]]:
    n = len(offsets)
    start = 0
    while start < n:
        end = min(start + size, n)
        if end < n:
            # prefer ending where a paragraph starts, if that keeps at least half a window
            for b in range(end, start + size // 2, -1):
                if b in starts:
                    end = b
                    break
        yield start, end
        if end >= n:
            return
        start = max(end - overlap, start + 1)


def chunk_blocks(blocks: list[Block], offsets: Offsets, chunk_tokens: int = 200,
                 overlap: int = 40) -> list[Chunk]:
    """Chunks of ``blocks`` (see the module docstring)."""
    if chunk_tokens < 8:
        raise ValueError(f"chunk_tokens must be at least 8, got {chunk_tokens}")
    if not 0 <= overlap < chunk_tokens // 2:
        raise ValueError(f"chunk_overlap must be in [0, chunk_tokens/2), got {overlap}")
    chunks: list[Chunk] = []
    for (page, heading), group in groupby(blocks, key=lambda b: (b.page, b.heading)):
        parts = [b.text for b in group]
        text = "\n\n".join(parts)
        para_chars, pos = set(), 0
        for part in parts:
            para_chars.add(pos)
            pos += len(part) + 2
        spans = offsets(text)
        if not spans:
            continue
        starts = {i for i, (s, _) in enumerate(spans) if s in para_chars}
        for a, b in _windows(spans, starts, chunk_tokens, overlap):
            piece = text[spans[a][0]:spans[b - 1][1]].strip()
            if piece:
                chunks.append(Chunk(len(chunks), piece, page, heading, b - a))
    return chunks
