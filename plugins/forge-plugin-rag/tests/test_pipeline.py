"""Collections: persistence under FORGE_HOME, incremental indexing by content hash, atomic
replace/delete, and the errors of empty or missing collections."""

from __future__ import annotations

import shutil

import pytest
from conftest import CountingEmbedder
from forge_plugin_rag.errors import (
    CollectionNotFound,
    DocumentNotFound,
    EmbedderMismatch,
    EmptyCollection,
    InvalidName,
    RAGError,
    UnsupportedFileType,
)
from forge_plugin_rag.pipeline import RAGPipeline
from forge_plugin_rag.store import Collection, list_collections


def test_readding_an_unchanged_file_indexes_nothing(home, corpus, counting):
    rag = RAGPipeline("docs", embedder=counting)
    first = rag.add_document(corpus[2])
    assert first.status == "added" and first.chunks_indexed == first.document.chunks > 0
    embedded = counting.embedded
    again = rag.add_document(corpus[2])
    assert (again.status, again.chunks_indexed) == ("unchanged", 0)
    assert counting.embedded == embedded  # not a single chunk re-embedded
    assert again.document.id == first.document.id
    assert (home / "rag" / "docs.db").is_file()  # persisted under FORGE_HOME
    assert list_collections() == ["docs"]


def test_changed_file_is_reindexed_in_place(home, tmp_path, counting):
    path = tmp_path / "notes.md"
    path.write_text("# Boiler\n\nThe boiler pressure is 1.5 bar.")
    rag = RAGPipeline("docs", embedder=counting)
    rag.add_document(path)
    path.write_text("# Boiler\n\nThe boiler pressure is 2.0 bar.\n\n# Fuse\n\nFuse 7 is 16 A.")
    result = rag.add_document(path)
    assert result.status == "updated" and result.document.chunks == 2
    docs = rag.documents()
    assert len(docs) == 1 and docs[0].chunks == 2
    texts = [s.text for s in rag.search("boiler pressure", k=5)]
    assert "2.0 bar" in texts[0] and not any("1.5 bar" in t for t in texts)


def test_same_bytes_under_another_name_is_a_duplicate(home, tmp_path, counting):
    a = tmp_path / "a.md"
    a.write_text("# A\n\nsame content")
    b = tmp_path / "b.md"
    shutil.copy(a, b)
    rag = RAGPipeline("docs", embedder=counting)
    rag.add_document(a)
    result = rag.add_document(b)
    assert result.status == "duplicate" and result.document.name == "a.md"
    assert len(rag.documents()) == 1


def test_reindex_forces_and_settings_change_reindexes(home, corpus, counting):
    from forge_plugin_rag.config import RagConfig

    RAGPipeline("docs", embedder=counting).add_document(corpus[3])
    forced = RAGPipeline("docs", embedder=counting).add_document(corpus[3], reindex=True)
    assert forced.status == "updated" and forced.chunks_indexed > 0
    smaller = RAGPipeline("docs", embedder=counting, config=RagConfig(chunk_tokens=16,
                                                                       chunk_overlap=4))
    result = smaller.add_document(corpus[3])
    assert result.status == "updated" and result.document.chunks > forced.document.chunks


def test_failure_while_embedding_leaves_the_collection_as_it_was(home, tmp_path, embedder):
    path = tmp_path / "doc.md"
    path.write_text("# One\n\nfirst version")
    RAGPipeline("docs", embedder=embedder).add_document(path)
    before = RAGPipeline("docs", embedder=embedder).search("first version", k=5)
    path.write_text("# One\n\nsecond version\n\n# Two\n\nmore")
    broken = CountingEmbedder(embedder, fail_after=0)
    with pytest.raises(RuntimeError, match="interrupted"):
        RAGPipeline("docs", embedder=broken).add_document(path)
    after = RAGPipeline("docs", embedder=embedder).search("first version", k=5)
    assert [s.text for s in after] == [s.text for s in before] == ["first version"]


def test_failure_inside_the_transaction_rolls_back(home, tmp_path, embedder):
    import numpy as np

    class WrongVectors(CountingEmbedder):
        def embed(self, texts):  # the second vector has the wrong size: insert fails mid-way
            good = self.inner.embed(texts)
            return [good[0], np.zeros(3, np.float32), *good[2:]]

    path = tmp_path / "doc.md"
    path.write_text("# One\n\nkeep me")
    RAGPipeline("docs", embedder=embedder).add_document(path)
    path.write_text("# One\n\nreplacement\n\n# Two\n\nsecond")
    with pytest.raises(Exception, match="(?i)dimension"):
        RAGPipeline("docs", embedder=WrongVectors(embedder)).add_document(path)
    rag = RAGPipeline("docs", embedder=embedder)
    assert [d.chunks for d in rag.documents()] == [1]
    with Collection("docs") as collection:
        assert collection.chunk_count() == 1
        count = collection.db.execute("SELECT count(*) FROM chunk_vectors").fetchone()[0]
        assert count == 1
    assert rag.search("keep me", k=1)[0].text == "keep me"


def test_remove_by_name_path_and_id(home, corpus, embedder):
    rag = RAGPipeline("docs", embedder=embedder)
    ids = [rag.add_document(p).document.id for p in corpus[:3]]
    assert rag.remove_document("garden-guide.md").id == ids[2]
    assert rag.remove_document(str(corpus[0])).id == ids[0]
    assert rag.remove_document(ids[1]).name == "employee-handbook.docx"
    with pytest.raises(EmptyCollection, match="no documents"):
        rag.search("anything")
    with Collection("docs") as collection:
        assert collection.db.execute("SELECT count(*) FROM chunk_vectors").fetchone()[0] == 0
    with pytest.raises(DocumentNotFound, match="no document 'ghost.md'"):
        rag.remove_document("ghost.md")


def test_collection_errors(home, embedder, corpus):
    with pytest.raises(CollectionNotFound, match="'nope' does not exist"):
        RAGPipeline("nope", embedder=embedder).search("x")
    with pytest.raises(InvalidName):
        RAGPipeline("../etc", embedder=embedder)
    with pytest.raises(UnsupportedFileType):
        RAGPipeline("docs", embedder=embedder).add_document("slides.pptx")
    assert list_collections() == []  # a refused file creates no collection
    rag = RAGPipeline("docs", embedder=embedder)
    rag.add_document(corpus[2])
    with pytest.raises(RAGError, match="non-empty"):
        rag.search("   ")
    with pytest.raises(RAGError, match="k must be"):
        rag.search("x", k=0)


def test_other_embedding_model_is_refused(home, corpus, embedder):
    RAGPipeline("docs", embedder=embedder).add_document(corpus[2])
    other = CountingEmbedder(embedder)
    other.name = "other-model"
    with pytest.raises(EmbedderMismatch, match="indexed with 'all-MiniLM-L6-v2'"):
        RAGPipeline("docs", embedder=other).search("x")
