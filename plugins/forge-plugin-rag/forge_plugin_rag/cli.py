"""``forge rag add | query | list | rm``.

Output discipline as ``forge run``: the answer streams to stdout, then the numbered sources;
progress and errors go to stderr. Every :class:`~forge_kernel.errors.ForgeError` (unsupported
type, too large, encrypted PDF, unknown collection, ...) is one ``Error:`` line and exit code 1;
``add`` goes on with the other files and exits 1 at the end if any failed.
"""

from __future__ import annotations

import sys
import time

import click

from forge_kernel.errors import ForgeError


def _config():
    from forge_kernel.config import load_config
    from forge_plugin_rag.config import RagConfig

    return RagConfig.from_section(load_config().section("rag"))


def _fail(exc: Exception) -> None:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(1)


@click.group("rag")
def rag_group() -> None:
    """Index documents and answer questions from them with sources."""


@rag_group.command("add")
@click.argument("collection")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--reindex", is_flag=True, help="Re-chunk and re-embed even unchanged files.")
def add_command(collection: str, files: tuple[str, ...], reindex: bool) -> None:
    """Index FILES (PDF, DOCX, Markdown, HTML, text) into COLLECTION (created if needed).

    Files whose content is unchanged since they were indexed are skipped.
    """
    from forge_plugin_rag.pipeline import RAGPipeline

    try:
        pipeline = RAGPipeline(collection, config=_config())
    except ForgeError as exc:
        _fail(exc)
    failed = 0
    for file in files:
        started = time.perf_counter()
        try:
            result = pipeline.add_document(file, reindex=reindex)
        except ForgeError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed += 1
            continue
        doc = result.document
        pages = f", {doc.pages} pages" if doc.pages else ""
        click.echo(f"{result.status:9} {doc.name} ({doc.chunks} chunks{pages}, "
                   f"{time.perf_counter() - started:.1f}s)")
    if failed:
        click.echo(f"{failed} of {len(files)} file(s) failed; nothing of them was indexed",
                   err=True)
        sys.exit(1)


@rag_group.command("query")
@click.argument("collection")
@click.argument("question")
@click.option("-k", "--top-k", type=click.IntRange(1, 100), default=None,
              help="How many chunks to retrieve (default: [rag] top_k, 5).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Longest answer in tokens (default: [rag] max_answer_tokens).")
@click.option("--model", default=None, help="Model that writes the answer (default model).")
@click.option("--no-answer", is_flag=True, help="Only list the retrieved sources.")
def query_command(collection: str, question: str, top_k: int | None, max_tokens: int | None,
                  model: str | None, no_answer: bool) -> None:
    """Answer QUESTION from COLLECTION, then list the numbered sources (file, page, score)."""
    from forge_plugin_rag.generator import LocalGenerator
    from forge_plugin_rag.pipeline import RAGPipeline

    try:
        config = _config()
        if max_tokens:
            config.max_answer_tokens = max_tokens
        pipeline = RAGPipeline(collection, config=config, generator=LocalGenerator(model))
        if no_answer:
            sources = pipeline.search(question, top_k)
        else:
            sources, pieces = pipeline.stream(question, top_k)
            for piece in pieces:
                sys.stdout.write(piece)
                sys.stdout.flush()
            click.echo("\n")
    except ForgeError as exc:
        _fail(exc)
    click.echo("Sources:")
    for s in sources:
        click.echo(f"  [{s.index}] {s.location()}  (score {s.score:.3f})")


@rag_group.command("list")
@click.argument("collection", required=False)
def list_command(collection: str | None) -> None:
    """List collections, or the documents of COLLECTION."""
    from forge_plugin_rag.pipeline import RAGPipeline
    from forge_plugin_rag.store import list_collections

    try:
        if collection is None:
            for name in list_collections():
                click.echo(name)
            return
        for doc in RAGPipeline(collection, config=_config()).documents():
            pages = f"{doc.pages} pages" if doc.pages else doc.kind
            click.echo(f"{doc.id:5}  {doc.name}  ({pages}, {doc.chunks} chunks, {doc.size} "
                       f"bytes)  {doc.source}")
    except ForgeError as exc:
        _fail(exc)


@rag_group.command("rm")
@click.argument("collection")
@click.argument("documents", nargs=-1)
@click.option("--all", "remove_all", is_flag=True, help="Delete the whole collection.")
def rm_command(collection: str, documents: tuple[str, ...], remove_all: bool) -> None:
    """Remove DOCUMENTS (id, path or file name) from COLLECTION, or the collection (--all)."""
    from forge_plugin_rag.pipeline import RAGPipeline
    from forge_plugin_rag.store import delete_collection

    try:
        if remove_all == bool(documents):
            raise click.UsageError("give DOCUMENTS or --all, not both or neither")
        if remove_all:
            delete_collection(collection)
            click.echo(f"deleted collection {collection}")
            return
        pipeline = RAGPipeline(collection, config=_config())
        for ref in documents:
            doc = pipeline.remove_document(ref)
            click.echo(f"removed {doc.name} ({doc.chunks} chunks)")
    except ForgeError as exc:
        _fail(exc)
