"""``rag_search``: retrieval as a tool a model can call (registered through
``forge_register_tools``; the OpenAI plugin runs it for server-side tool calls)."""

from __future__ import annotations

from typing import Any

from forge_kernel.interfaces.tool import Tool
from forge_plugin_rag.errors import RAGError


class RetrievalTool(Tool):
    """Searches a collection and returns the numbered passages with their sources.

    Bad arguments (and a missing or empty collection) raise :class:`RAGError` — a
    :class:`ValueError`-like user error with a message the caller can hand back to the model.
    """

    name = "rag_search"
    description = ("Search a collection of indexed documents (manuals, notes, reports) and "
                   "return the most relevant passages, numbered, with file and page.")
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            # bounded: a small model's query can otherwise ramble on until max_tokens
            "query": {"type": "string", "maxLength": 200,
                      "description": "What to look for, in natural language."},
            "collection": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                           "description": "Collection to search (default: the configured one)."},
            "k": {"type": "integer", "minimum": 1, "maximum": 20,
                  "description": "How many passages to return (default 5)."},
        },
        "required": ["query"],
        "additionalProperties": False,
    }

    def __init__(self, config: Any = None, home: Any = None, embedder: Any = None) -> None:
        from forge_plugin_rag.config import RagConfig

        if config is None:
            config = _configured()
        self.config = RagConfig.from_section(config)
        self.home, self.embedder = home, embedder

    @property
    def parameters(self) -> dict[str, Any]:  # type: ignore[override]
        """:attr:`schema` with ``collection`` limited to the collections on disk when there are
        any: the call is constrained to this schema, so a model can only name one that exists
        (a small model otherwise invents names, even URLs)."""
        from forge_plugin_rag.store import list_collections

        names = list_collections(self.home)
        if not names:
            return self.schema
        collection = {**self.schema["properties"]["collection"], "enum": names}
        del collection["pattern"]
        return {**self.schema, "properties": {**self.schema["properties"],
                                              "collection": collection}}

    def __call__(self, **arguments: Any) -> str:
        from forge_plugin_rag.answer import context_block
        from forge_plugin_rag.pipeline import RAGPipeline

        unknown = sorted(set(arguments) - set(self.schema["properties"]))
        if unknown:
            raise RAGError(f"rag_search: unknown argument(s) {', '.join(unknown)}")
        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip():
            raise RAGError("rag_search: 'query' must be a non-empty string")
        k = arguments.get("k", self.config.top_k)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 20:
            raise RAGError(f"rag_search: 'k' must be an integer from 1 to 20, got {k!r}")
        collection = arguments.get("collection") or self.config.default_collection
        pipeline = RAGPipeline(collection, config=self.config, home=self.home,
                               embedder=self.embedder)
        sources = pipeline.search(query, k)
        return context_block(sources)


def _configured() -> Any:
    """The effective ``[rag]`` section (file and ``FORGE_RAG_*``; a bad value is an error)."""
    from forge_kernel.config import load_config

    return load_config().section("rag")
