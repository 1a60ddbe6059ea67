"""Token chunking: sizes, overlap, paragraph boundaries, sections never crossed."""

from __future__ import annotations

import pytest
from forge_plugin_rag.chunking import chunk_blocks
from forge_plugin_rag.document import Block


def test_windows_respect_size_and_overlap(embedder):
    words = " ".join(f"word{i}" for i in range(400))
    chunks = chunk_blocks([Block(words, page=1)], embedder.offsets, chunk_tokens=64, overlap=16)
    assert len(chunks) > 3
    assert all(c.tokens <= 64 for c in chunks)
    assert all(c.page == 1 and c.heading is None for c in chunks)
    for a, b in zip(chunks, chunks[1:], strict=False):
        tail = a.text.split()[-3:]
        assert " ".join(tail) in b.text  # the next chunk repeats the previous one's end
    assert chunks[0].text.startswith("word0 ") and chunks[-1].text.endswith("word399")


def test_chunks_never_cross_sections(embedder):
    blocks = [Block("alpha " * 30, heading="A"), Block("beta " * 30, heading="B"),
              Block("gamma " * 5, page=2)]
    chunks = chunk_blocks(blocks, embedder.offsets, chunk_tokens=200, overlap=20)
    assert [(c.heading, c.page) for c in chunks] == [("A", None), ("B", None), (None, 2)]
    assert "beta" not in chunks[0].text and chunks[1].embedding_text().startswith("B\n")


def test_cuts_prefer_paragraph_starts(embedder):
    paragraphs = [Block(f"para{i} " + "filler " * 20, heading="H") for i in range(6)]
    chunks = chunk_blocks(paragraphs, embedder.offsets, chunk_tokens=60, overlap=0)
    assert all(c.text.startswith("para") for c in chunks)


def test_chunks_are_slices_of_the_original_text(embedder):
    text = "Dürüm, naïve café — 3.5 bar; e-mail: a@b.org"
    (chunk,) = chunk_blocks([Block(text)], embedder.offsets)
    assert chunk.text == text  # not detokenized wordpieces (which would lower-case, split)


@pytest.mark.parametrize(("size", "overlap"), [(4, 0), (64, 32), (64, -1)])
def test_bad_settings(embedder, size, overlap):
    with pytest.raises(ValueError):
        chunk_blocks([Block("x")], embedder.offsets, size, overlap)
