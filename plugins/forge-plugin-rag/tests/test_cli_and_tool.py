"""``forge rag`` commands (in-process, isolated FORGE_HOME) and the ``rag_search`` tool."""

from __future__ import annotations

import forge_plugin_rag.plugin as rag_plugin
import pytest
from forge_plugin_rag.errors import RAGError

from forge_kernel.interfaces.tool import Tool


class EchoGenerator:
    """Stands in for the language model in CLI tests: 'answers' with the top source's text
    (the real model is exercised end to end in test_server.py)."""

    def __init__(self, model=None) -> None:
        self.model = model

    def stream(self, question, sources, max_tokens, temperature, usage=None):
        yield "From the sources: "
        yield sources[0].text


@pytest.fixture()
def rag_cli(forge_cli, register_plugin, monkeypatch, embedder):
    register_plugin(rag_plugin, "rag")
    monkeypatch.setattr("forge_plugin_rag.generator.LocalGenerator", EchoGenerator)
    return forge_cli


def test_add_list_query_rm(rag_cli, corpus):
    result = rag_cli("rag", "add", "docs", *map(str, corpus))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("added") for line in lines)
    assert "pump-manual.pdf (6 chunks, 6 pages" in lines[0]

    again = rag_cli("rag", "add", "docs", str(corpus[0]))
    assert again.stdout.startswith("unchanged pump-manual.pdf")

    listed = rag_cli("rag", "list", "docs")
    assert [line.split()[1] for line in listed.stdout.splitlines()] == [p.name for p in corpus]
    assert rag_cli("rag", "list").stdout.split() == ["docs"]

    answer = rag_cli("rag", "query", "docs", "How long is the housing guaranteed?", "-k", "3")
    assert answer.exit_code == 0, answer.stderr
    body, sources = answer.stdout.split("Sources:")
    assert "five-year warranty" in body
    first = sources.strip().splitlines()[0]
    assert first.startswith("[1] pump-manual.pdf, page 5  (score 0.")
    assert len(sources.strip().splitlines()) == 3

    removed = rag_cli("rag", "rm", "docs", "pump-manual.pdf")
    assert removed.exit_code == 0 and "removed pump-manual.pdf (6 chunks)" in removed.stdout
    assert rag_cli("rag", "rm", "docs", "--all").exit_code == 0
    assert rag_cli("rag", "list").stdout == ""


def test_cli_errors(rag_cli, tmp_path, corpus):
    bad = tmp_path / "deck.pptx"
    bad.write_bytes(b"x")
    result = rag_cli("rag", "add", "docs", str(bad), str(corpus[2]))
    assert result.exit_code == 1
    assert "Error: " in result.stderr and "unsupported file type '.pptx'" in result.stderr
    assert result.stdout.startswith("added     garden-guide.md")  # the good file still went in

    missing = rag_cli("rag", "query", "nothing-here", "question?")
    assert missing.exit_code == 1 and "collection 'nothing-here' does not exist" in missing.stderr

    rag_cli("rag", "rm", "docs", "garden-guide.md")
    empty = rag_cli("rag", "query", "docs", "question?", "--no-answer")
    assert empty.exit_code == 1 and "has no documents" in empty.stderr

    big = rag_cli("rag", "add", "docs", str(corpus[0]), env={"FORGE_RAG_MAX_FILE_BYTES": "100"})
    assert big.exit_code == 1 and "over the 100-byte limit" in big.stderr


def test_retrieval_tool(indexed, embedder):
    from forge_plugin_rag.config import RagConfig
    from forge_plugin_rag.tool import RetrievalTool

    tool = RetrievalTool(config=RagConfig(default_collection="corpus"), home=indexed.home,
                         embedder=embedder)
    assert isinstance(tool, Tool) and tool.name == "rag_search"
    assert tool.parameters["required"] == ["query"]
    # the collections on disk are the only names a (constrained) call may give
    assert tool.parameters["properties"]["collection"]["enum"] == ["corpus"]
    empty = RetrievalTool(config=RagConfig(), home=indexed.home / "none", embedder=embedder)
    assert "pattern" in empty.parameters["properties"]["collection"]
    text = tool(query="what does E17 mean on the display?", k=2)
    first = text.split("\n\n")[0]
    assert first.startswith("[1] pump-manual.pdf, page 4: Error codes. E17")
    assert text.count("\n\n[") == 1  # two passages
    for bad, message in [({}, "'query' must be"), ({"query": "x", "k": "3"}, "'k' must be"),
                         ({"query": "x", "k": 99}, "'k' must be"),
                         ({"query": "x", "mode": 1}, "unknown argument"),
                         ({"query": "x", "collection": "absent"}, "does not exist")]:
        with pytest.raises(RAGError, match=message):
            tool(**bad)


def test_tool_is_registered(forge_host, register_plugin):
    register_plugin(rag_plugin, "rag")
    assert "rag_search" in forge_host.registry.names("tool")
