"""Sources and the grounded prompt: what retrieval hands to the generator and to the user."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SYSTEM = ("Answer the question using only the numbered sources, and cite the source like [1]. "
          "If the sources do not contain the answer, say that you do not know.")


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
    return "\n\n".join(f"[{s.index}] {s.location()}: {s.text}" for s in sources)


def grounded_text(question: str, sources: list[Source]) -> str:
    """Instruction, numbered sources and question."""
    return f"{SYSTEM}\n\n{context_block(sources)}\n\nQuestion: {question}"


ECHO_STOPS = ["\n\n", "\nQuestion:"]
"""Where a completion-style answer ends: the next paragraph is the model inventing the next
question (or re-reading the sources), not part of the answer."""


def answer_prompt(engine: Any, question: str, sources: list[Source]) -> tuple[list[int], list[str]]:
    """Prompt ids and stop strings for ``engine``'s model.

    A model with a chat template gets one user turn. A model without one — forge's default,
    Gemma 3 270M, is the pretrained (not instruction-tuned) checkpoint — echoes chat-formatted
    prompts back; it is given a completion prompt ending in ``Answer:`` instead, which it
    continues with a short answer, cut at the first blank line.
    """
    tokenizer = engine.tokenizer
    text = grounded_text(question, sources)
    if (getattr(engine, "metadata", None) or {}).get("chat_template"):
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                 add_generation_prompt=True)
        return tokenizer.encode(rendered, add_special_tokens=False), []  # template wrote BOS
    return tokenizer.encode(f"{text}\nAnswer:", add_special_tokens=True), list(ECHO_STOPS)
