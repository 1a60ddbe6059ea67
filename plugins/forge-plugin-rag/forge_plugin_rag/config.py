"""The ``[rag]`` configuration section (file table or ``FORGE_RAG_*``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class RagConfig:
    """Chunking, retrieval and answer settings shared by the API, the CLI and the endpoint."""

    chunk_tokens: int = 200
    """Tokens (of the embedding model's tokenizer) per chunk; MiniLM reads at most 256."""
    chunk_overlap: int = 40
    """Tokens a chunk repeats from the end of the previous one in the same section."""
    top_k: int = 5
    max_file_bytes: int = 100 * 1024 * 1024
    """Larger files are refused before they are read (from ``stat``, or the HTTP
    ``Content-Length`` / running byte count of an upload)."""
    max_answer_tokens: int = 128
    temperature: float = 0.0
    """Greedy by default: answers grounded in the sources should be reproducible."""
    default_collection: str = "default"
    """The collection the ``rag_search`` tool searches when a call names none."""

    @classmethod
    def from_section(cls, section: Any) -> RagConfig:
        """From ``config.section("rag")`` (an instance, a dict, or nothing)."""
        if isinstance(section, cls):
            return section
        return cls(**dict(section or {}))
