"""Sources and the grounded prompt: what retrieval hands to the generator and to the user."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SYSTEM = ("Answer the question using only the numbered sources below. Cite the sources you use "
          "as [1], [2], ... If the sources do not contain the answer, say that you do not know.")


@dataclass(slots=True)
class Source:
    """One retrieved chunk, numbered as the prompt and the answer cite it."""

    index: int
    document: str
    """The document's file name."""
    source: str
    """Its identity in the collection (resolved path, or upload name)."""
    page: int | None
    heading: str | None
    score: float
    """Cosine similarity of the chunk to the question, in [-1, 1]."""
    text: str

    def location(self) -> str:
        """``manual.pdf, page 3`` / ``guide.md, § Install``: how the CLI lists it."""
        parts = [self.document]
        if self.page is not None:
            parts.append(f"page {self.page}")
        if self.heading:
            parts.append(f"§ {self.heading}")
        return ", ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "document": self.document, "source": self.source,
                "page": self.page, "heading": self.heading, "score": round(self.score, 6),
                "text": self.text}


@dataclass(slots=True)
class Answer:
    """A generated answer and the sources it was given (numbered as cited)."""

    text: str
    sources: list[Source] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"answer": self.text, "sources": [s.as_json() for s in self.sources]}


def sources_from_hits(hits: list[Any]) -> list[Source]:
    """Number :class:`~forge_plugin_rag.store.Hit` objects 1..n, best first."""
    return [Source(i, h.document, h.source, h.page, h.heading, h.score, h.text)
            for i, h in enumerate(hits, start=1)]


def context_block(sources: list[Source]) -> str:
    """The numbered sources as the model reads them (also the retrieval tool's output)."""
    parts = []
    for s in sources:
        parts.append(f"[{s.index}] ({s.location()})\n{s.text}")
    return "\n\n".join(parts)


def build_messages(question: str, sources: list[Source]) -> list[dict[str, str]]:
    """Chat messages for a grounded answer. One user turn: Gemma's template has no system
    role of its own (it folds a system message into the first user turn anyway)."""
    content = f"{SYSTEM}\n\nSources:\n\n{context_block(sources)}\n\nQuestion: {question}"
    return [{"role": "user", "content": content}]


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of ``messages`` with the model's chat template (as ``forge run`` does)."""
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    return tokenizer.encode(rendered, add_special_tokens=False)  # the template wrote BOS
