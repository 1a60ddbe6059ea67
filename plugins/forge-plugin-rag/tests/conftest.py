"""Fixtures: the real embedding model (loaded once), the written corpus, an isolated FORGE_HOME
and a collection indexing the corpus."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from corpus import write_corpus  # noqa: E402


@pytest.fixture(scope="session")
def embedder():
    from forge_plugin_rag.embedder import shared_embedder

    return shared_embedder()


class CountingEmbedder:
    """The real embedder, counting the texts it embeds (to prove nothing was re-indexed)."""

    def __init__(self, inner, fail_after: int | None = None) -> None:
        self.inner, self.embedded, self.fail_after = inner, 0, fail_after
        self.name, self.dimensions = inner.name, inner.dimensions

    def offsets(self, text):
        return self.inner.offsets(text)

    def embed(self, texts):
        if self.fail_after is not None and self.embedded + len(texts) > self.fail_after:
            raise RuntimeError("embedding interrupted")
        self.embedded += len(texts)
        return self.inner.embed(texts)


@pytest.fixture()
def counting(embedder) -> CountingEmbedder:
    return CountingEmbedder(embedder)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "forge-home"
    monkeypatch.setenv("FORGE_HOME", str(path))
    return path


@pytest.fixture(scope="session")
def indexed(corpus, embedder, tmp_path_factory) -> Iterator:
    """A pipeline over a collection holding the whole corpus (read-only for tests)."""
    from forge_plugin_rag.pipeline import RAGPipeline

    home = tmp_path_factory.mktemp("indexed-home")
    pipeline = RAGPipeline("corpus", home=home, embedder=embedder)
    for path in corpus:
        pipeline.add_document(path)
    yield pipeline
