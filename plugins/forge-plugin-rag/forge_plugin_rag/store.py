"""Collections: one SQLite file each (``$FORGE_HOME/rag/NAME.db``) with the documents, their
chunks and a sqlite-vec ``vec0`` table of the chunk vectors.

Why sqlite-vec (through apsw, because the standard ``sqlite3`` module here cannot load
extensions): vectors live in the same database as the chunk text and document rows, so adding,
replacing or deleting a document is ONE transaction — a failure half-way leaves the collection
exactly as it was, with no separate index file to fall out of sync. Search is exact
(brute-force cosine), which is fast enough at the sizes a local collection reaches (see
docs/rag.md for measurements) and has no recall loss or rebuild step.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge_plugin_rag.errors import (
    CollectionNotFound,
    DocumentNotFound,
    EmbedderMismatch,
    InvalidName,
)

SCHEMA_VERSION = "1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL UNIQUE, name TEXT NOT NULL, kind TEXT NOT NULL,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, pages INTEGER, chunks INTEGER NOT NULL,
    settings TEXT NOT NULL, added_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, document_id INTEGER NOT NULL REFERENCES documents(id),
    ordinal INTEGER NOT NULL, page INTEGER, heading TEXT, text TEXT NOT NULL,
    tokens INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks(document_id);
"""


def collections_dir(home: Path | None = None) -> Path:
    """``$FORGE_HOME/rag`` (read when called, so tests and servers can set ``FORGE_HOME``)."""
    from forge_kernel.config import forge_home

    return (home or forge_home()) / "rag"


def check_name(name: str) -> str:
    """A collection name usable as a file name and URL segment, or :class:`InvalidName`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidName(f"invalid collection name {name!r}: use 1-64 letters, digits, '_', "
                          "'-' or '.', starting with a letter or digit")
    return name


def list_collections(home: Path | None = None) -> list[str]:
    """Names of the collections on disk, sorted."""
    root = collections_dir(home)
    return sorted(p.stem for p in root.glob("*.db")) if root.is_dir() else []


def delete_collection(name: str, home: Path | None = None) -> None:
    """Remove a collection's files (:class:`CollectionNotFound` if there is none)."""
    path = collections_dir(home) / f"{check_name(name)}.db"
    if not path.exists():
        raise CollectionNotFound(f"collection {name!r} does not exist")
    for extra in ("-wal", "-shm"):
        Path(str(path) + extra).unlink(missing_ok=True)
    path.unlink()


@dataclass(slots=True)
class DocumentInfo:
    """A document row of a collection."""

    id: int
    source: str
    name: str
    kind: str
    sha256: str
    size: int
    pages: int | None
    chunks: int
    settings: str
    added_at: float

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "rag.document", "name": self.name,
                "source": self.source, "kind": self.kind, "sha256": self.sha256,
                "bytes": self.size, "pages": self.pages, "chunks": self.chunks,
                "added_at": int(self.added_at)}


@dataclass(slots=True)
class Hit:
    """One search result: a chunk, its document and its cosine similarity."""

    chunk_id: int
    score: float
    text: str
    page: int | None
    heading: str | None
    document: str
    source: str


_DOC_COLUMNS = "id, source, name, kind, sha256, size, pages, chunks, settings, added_at"


class Collection:
    """An open collection. Every method opens its own short transaction; a ``Collection``
    may be used from one thread at a time (the endpoint opens one per request)."""

    def __init__(self, name: str, home: Path | None = None, create: bool = False,
                 embedder: str = "", dimensions: int = 0) -> None:
        import apsw
        import sqlite_vec

        self.name = check_name(name)
        self.path = collections_dir(home) / f"{name}.db"
        if not create and not self.path.exists():
            raise CollectionNotFound(f"collection {name!r} does not exist (create it by adding "
                                     f"a document: forge rag add {name} FILE)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = apsw.Connection(str(self.path))
        self.db.set_busy_timeout(10_000)  # another process (CLI next to the server) may write
        self.db.enable_load_extension(True)
        self.db.load_extension(sqlite_vec.loadable_path())
        self.db.enable_load_extension(False)
        self.db.execute("PRAGMA journal_mode=WAL")
        with self.db:
            self.db.execute(_SCHEMA)
            meta = dict(self.db.execute("SELECT key, value FROM meta"))
            if not meta:
                self.db.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("schema", SCHEMA_VERSION), ("embedder", embedder),
                    ("dimensions", str(dimensions)), ("created_at", str(time.time()))])
                self.db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS chunk_vectors USING vec0("
                                f"embedding float[{int(dimensions)}] distance_metric=cosine)")
                meta = {"embedder": embedder, "dimensions": str(dimensions)}
        self.embedder, self.dimensions = meta["embedder"], int(meta["dimensions"])
        if embedder and embedder != self.embedder:
            raise EmbedderMismatch(f"collection {name!r} was indexed with {self.embedder!r}, "
                                   f"not {embedder!r}; re-create it to change the model")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- documents ------------------------------------------------------------------------------
    def documents(self) -> list[DocumentInfo]:
        rows = self.db.execute(f"SELECT {_DOC_COLUMNS} FROM documents ORDER BY id")
        return [DocumentInfo(*row) for row in rows]

    def by_source(self, source: str) -> DocumentInfo | None:
        row = self.db.execute(f"SELECT {_DOC_COLUMNS} FROM documents WHERE source = ?",
                              (source,)).fetchone()
        return DocumentInfo(*row) if row else None

    def by_sha256(self, sha256: str) -> DocumentInfo | None:
        row = self.db.execute(f"SELECT {_DOC_COLUMNS} FROM documents WHERE sha256 = ?",
                              (sha256,)).fetchone()
        return DocumentInfo(*row) if row else None

    def resolve(self, ref: str | int) -> DocumentInfo:
        """A document by id, source or (unique) name, else :class:`DocumentNotFound`."""
        docs = self.documents()
        for match in ([d for d in docs if str(d.id) == str(ref)],
                      [d for d in docs if d.source == ref],
                      [d for d in docs if d.name == ref]):
            if len(match) == 1:
                return match[0]
            if len(match) > 1:
                raise DocumentNotFound(f"{ref!r} names {len(match)} documents in collection "
                                       f"{self.name!r}; use the id or full source")
        raise DocumentNotFound(f"no document {ref!r} in collection {self.name!r}")

    def chunk_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def _delete_rows(self, document_id: int) -> None:
        self.db.execute("DELETE FROM chunk_vectors WHERE rowid IN (SELECT id FROM chunks WHERE "
                        "document_id = ?)", (document_id,))
        self.db.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
        self.db.execute("DELETE FROM documents WHERE id = ?", (document_id,))

    def replace(self, doc: Any, settings: str, chunks: list[Any], vectors: Any) -> DocumentInfo:
        """Insert ``doc`` (a loaded :class:`~forge_plugin_rag.document.Document`) with its
        chunks and vectors, replacing any document with the same source — atomically."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        with self.db:  # one transaction: all of it or none of it
            old = self.by_source(doc.source)
            if old is not None:
                self._delete_rows(old.id)
            self.db.execute(
                "INSERT INTO documents (source, name, kind, sha256, size, pages, chunks, "
                "settings, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (doc.source, doc.name, doc.kind, doc.sha256, doc.size, doc.pages, len(chunks),
                 settings, time.time()))
            document_id = self.db.last_insert_rowid()
            for chunk, vector in zip(chunks, vectors, strict=True):
                self.db.execute("INSERT INTO chunks (document_id, ordinal, page, heading, text, "
                                "tokens) VALUES (?, ?, ?, ?, ?, ?)",
                                (document_id, chunk.ordinal, chunk.page, chunk.heading,
                                 chunk.text, chunk.tokens))
                self.db.execute("INSERT INTO chunk_vectors (rowid, embedding) VALUES (?, ?)",
                                (self.db.last_insert_rowid(), vector.astype("float32").tobytes()))
            return self.by_source(doc.source)

    def remove(self, ref: str | int) -> DocumentInfo:
        """Delete a document and its chunks and vectors (atomically); returns what was removed."""
        with self.db:
            info = self.resolve(ref)
            self._delete_rows(info.id)
        return info

    # -- search ---------------------------------------------------------------------------------
    def search(self, vector: Any, k: int) -> list[Hit]:
        """The ``k`` chunks nearest to a unit ``vector``, best first (score = cosine)."""
        rows = self.db.execute(
            "WITH nearest AS (SELECT rowid, distance FROM chunk_vectors WHERE embedding MATCH ? "
            "AND k = ?) SELECT c.id, n.distance, c.text, c.page, c.heading, d.name, d.source "
            "FROM nearest n JOIN chunks c ON c.id = n.rowid JOIN documents d "
            "ON d.id = c.document_id ORDER BY n.distance",
            (vector.astype("float32").tobytes(), int(k)))
        return [Hit(cid, 1.0 - dist, text, page, heading, name, source)
                for cid, dist, text, page, heading, name, source in rows]
