"""The Python API: ``RAGPipeline("manual").add_document("manual.pdf")``, then ``.query(...)``.

Indexing is incremental by content hash: a document whose bytes (and chunk settings) are
unchanged since it was indexed is not loaded into the model again; a changed one is re-chunked,
re-embedded and swapped in one transaction, so a failure (unreadable file, interrupted
embedding) leaves the collection as it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge_plugin_rag.answer import Answer, Source, sources_from_hits
from forge_plugin_rag.chunking import chunk_blocks
from forge_plugin_rag.config import RagConfig
from forge_plugin_rag.document import Document
from forge_plugin_rag.errors import EmptyCollection, RAGError
from forge_plugin_rag.loaders import kind_of, load_bytes, load_document
from forge_plugin_rag.store import Collection, DocumentInfo, check_name


@dataclass(slots=True)
class AddResult:
    """What adding one document did: ``added``, ``updated`` (content changed), ``unchanged``
    (nothing indexed) or ``duplicate`` (same bytes already indexed under another source)."""

    status: str
    document: DocumentInfo
    chunks_indexed: int

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "chunks_indexed": self.chunks_indexed,
                "document": self.document.as_json()}


class RAGPipeline:
    """A collection under ``$FORGE_HOME/rag`` with the embedder and a generator.

    ``embedder`` defaults to the process-wide MiniLM model; ``generator`` (an object with
    :meth:`~forge_plugin_rag.generator.LocalGenerator.stream`) to forge's default model, loaded
    on the first :meth:`query`.
    """

    def __init__(self, collection: str, *, config: RagConfig | None = None,
                 home: Path | None = None, embedder: Any = None, generator: Any = None) -> None:
        self.name = check_name(collection)
        self.config = config or RagConfig()
        self.home = home
        self._embedder, self._generator = embedder, generator

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from forge_plugin_rag.embedder import shared_embedder

            self._embedder = shared_embedder()
        return self._embedder

    @property
    def generator(self) -> Any:
        if self._generator is None:
            from forge_plugin_rag.generator import LocalGenerator

            self._generator = LocalGenerator()
        return self._generator

    def _open(self, create: bool = False) -> Collection:
        from forge_plugin_rag.embedder import DIMENSIONS, MODEL_NAME

        name = getattr(self._embedder, "name", MODEL_NAME)
        dims = getattr(self._embedder, "dimensions", DIMENSIONS)
        return Collection(self.name, self.home, create=create, embedder=name, dimensions=dims)

    def _settings(self) -> str:
        from forge_plugin_rag.embedder import MODEL_NAME

        name = getattr(self._embedder, "name", MODEL_NAME)
        return f"{name}:{self.config.chunk_tokens}:{self.config.chunk_overlap}"

    # -- indexing -------------------------------------------------------------------------------
    def add_document(self, path: str | Path, reindex: bool = False) -> AddResult:
        """Index a file (PDF, DOCX, Markdown, HTML, text); see the module docstring."""
        path = Path(path).expanduser()
        kind_of(str(path))  # unsupported types fail before the collection is created
        source = str(path.resolve())
        with self._open(create=True) as collection:
            existing = collection.by_source(source)
            if existing is not None and not reindex and path.is_file() \
                    and path.stat().st_size == existing.size \
                    and _sha256_file(path) == existing.sha256 \
                    and existing.settings == self._settings():
                return AddResult("unchanged", existing, 0)  # not even parsed
            doc = load_document(path, max_bytes=self.config.max_file_bytes)
            return self._index(collection, doc, existing, reindex)

    def add_bytes(self, data: bytes, name: str, reindex: bool = False) -> AddResult:
        """Index an uploaded file; ``name`` (its file name) is its identity."""
        with self._open(create=True) as collection:
            existing = collection.by_source(name)
            if existing is not None and not reindex and \
                    hashlib.sha256(data).hexdigest() == existing.sha256 and \
                    existing.settings == self._settings():
                return AddResult("unchanged", existing, 0)
            doc = load_bytes(data, name, max_bytes=self.config.max_file_bytes)
            return self._index(collection, doc, existing, reindex)

    def _index(self, collection: Collection, doc: Document, existing: DocumentInfo | None,
               reindex: bool) -> AddResult:
        if existing is None and not reindex:
            twin = collection.by_sha256(doc.sha256)
            if twin is not None and twin.settings == self._settings():
                return AddResult("duplicate", twin, 0)
        chunks = chunk_blocks(doc.blocks, self.embedder.offsets, self.config.chunk_tokens,
                              self.config.chunk_overlap)
        if not chunks:
            raise RAGError(f"{doc.name}: no text to index")
        vectors = self.embedder.embed([c.embedding_text() for c in chunks])
        info = collection.replace(doc, self._settings(), chunks, vectors)
        return AddResult("updated" if existing else "added", info, len(chunks))

    def remove_document(self, ref: str | int) -> DocumentInfo:
        """Delete a document (by id, source, path or unique file name)."""
        with self._open() as collection:
            try:
                return collection.remove(ref)
            except RAGError:
                path = Path(str(ref)).expanduser()
                if path.exists():  # a relative path given on the command line
                    return collection.remove(str(path.resolve()))
                raise

    def documents(self) -> list[DocumentInfo]:
        with self._open() as collection:
            return collection.documents()

    # -- retrieval and answers ------------------------------------------------------------------
    def search(self, question: str, k: int | None = None) -> list[Source]:
        """The ``k`` most similar chunks, numbered best first."""
        if not isinstance(question, str) or not question.strip():
            raise RAGError("the question must be a non-empty string", param="query")
        k = self.config.top_k if k is None else k
        if not 1 <= k <= 100:
            raise RAGError(f"k must be between 1 and 100, got {k}", param="k")
        with self._open() as collection:
            if collection.chunk_count() == 0:
                raise EmptyCollection(f"collection {self.name!r} has no documents; add some "
                                      f"first (forge rag add {self.name} FILE)")
            vector = self.embedder.embed([question])[0]
            return sources_from_hits(collection.search(vector, k))

    def stream(self, question: str, k: int | None = None,
               usage: dict[str, int] | None = None) -> tuple[list[Source], Iterator[str]]:
        """Sources, and an iterator of the answer's text as it is generated."""
        sources = self.search(question, k)
        text = self.generator.stream(question, sources, self.config.max_answer_tokens,
                                     self.config.temperature, usage)
        return sources, text

    def query(self, question: str, k: int | None = None) -> Answer:
        """Retrieve, generate, and return the answer with its numbered sources."""
        usage: dict[str, int] = {}
        sources, pieces = self.stream(question, k, usage)
        text = "".join(pieces).strip()
        return Answer(text, sources, usage.get("prompt_tokens", 0),
                      usage.get("completion_tokens", 0))


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
