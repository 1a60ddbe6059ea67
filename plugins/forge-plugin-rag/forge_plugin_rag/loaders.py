"""Loaders: PDF (pypdf), DOCX (python-docx), Markdown, HTML (BeautifulSoup) and plain text.

Each takes the file's bytes and returns :class:`Block` objects; :func:`load_document` picks the
loader by file extension, enforces the size limit before reading, hashes the bytes and turns
library exceptions into errors naming the file.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable
from pathlib import Path

from forge_plugin_rag.document import Block, Document
from forge_plugin_rag.errors import (
    DocumentTooLarge,
    EmptyDocument,
    EncryptedDocument,
    UnreadableDocument,
    UnsupportedFileType,
)

KINDS = {".pdf": "pdf", ".docx": "docx", ".md": "markdown", ".markdown": "markdown",
         ".html": "html", ".htm": "html", ".txt": "text", ".text": "text"}
"""Supported extensions and the loader each selects."""

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]


def load_pdf(data: bytes, name: str) -> tuple[list[Block], int]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise UnreadableDocument(f"{name}: not a PDF file (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # PDFs encrypted with an empty user password (permissions only) still open.
            try:
                opened = reader.decrypt("")
            except (PdfReadError, PyPdfError, NotImplementedError) as exc:
                raise EncryptedDocument(f"{name}: the PDF is encrypted and cannot be "
                                        f"decrypted ({exc})") from None
            if not opened:
                raise EncryptedDocument(f"{name}: the PDF is encrypted with a password; "
                                        "decrypt it first (e.g. qpdf --decrypt)")
        blocks = []
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            blocks.extend(Block(p, page=number) for p in _paragraphs(text))
        return blocks, len(reader.pages)
    except EncryptedDocument:
        raise
    except Exception as exc:  # pypdf raises many types on damaged files
        raise UnreadableDocument(f"{name}: the PDF cannot be read ({type(exc).__name__}: "
                                 f"{exc})") from None


def load_docx(data: bytes, name: str) -> list[Block]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, OSError) as exc:
        raise UnreadableDocument(f"{name}: not a readable DOCX file ({exc})") from None
    except Exception as exc:  # zipfile.BadZipFile, lxml errors
        raise UnreadableDocument(f"{name}: not a readable DOCX file ({type(exc).__name__}: "
                                 f"{exc})") from None
    from docx.table import Table

    blocks: list[Block] = []
    heading = None
    # body order, so a table belongs to the heading above it
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                cells = [c.text.strip() for c in row.cells if c.text.strip()]
                if cells:
                    blocks.append(Block(" | ".join(cells), heading=heading))
            continue
        text = item.text.strip()
        if not text:
            continue
        style = (item.style.name if item.style is not None else "") or ""
        if style.startswith("Heading") or style == "Title":
            heading = text
            continue
        blocks.append(Block(text, heading=heading))
    return blocks


_MD_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")


def load_markdown(text: str) -> list[Block]:
    """ATX headings start sections; blank lines separate blocks; fenced code stays whole."""
    blocks: list[Block] = []
    heading, current, fence = None, [], None

    def flush() -> None:
        body = "\n".join(current).strip()
        if body:
            blocks.append(Block(body, heading=heading))
        current.clear()

    for line in text.splitlines():
        marker = _FENCE.match(line)
        if fence is not None:
            current.append(line)
            if marker and marker.group(1) == fence:
                fence = None
                flush()
            continue
        if marker:
            flush()
            fence = marker.group(1)
            current.append(line)
            continue
        match = _MD_HEADING.match(line)
        if match:
            flush()
            heading = match.group(2).strip() or heading
        elif not line.strip():
            flush()
        else:
            current.append(line)
    flush()
    return blocks


_HTML_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_HTML_BLOCKS = _HTML_HEADINGS | {"p", "li", "pre", "blockquote", "td", "th", "dd", "dt",
                                 "figcaption", "caption"}


def load_html(text: str) -> list[Block]:
    """Headings start sections; leaf block elements become blocks; scripts/styles dropped."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    blocks: list[Block] = []
    heading = None
    for element in soup.find_all(_HTML_BLOCKS):
        if element.name not in _HTML_HEADINGS and element.find(_HTML_BLOCKS):
            continue  # its inner blocks are visited on their own
        content = " ".join(element.get_text(" ", strip=True).split())
        if not content:
            continue
        if element.name in _HTML_HEADINGS:
            heading = content
        else:
            blocks.append(Block(content, heading=heading))
    if not blocks:  # markup without block elements: keep its text
        body = soup.get_text("\n")
        blocks = [Block(p, heading=heading) for p in _paragraphs(body)]
    return blocks


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableDocument(f"{name}: not UTF-8 text (byte {exc.start}: {exc.reason})"
                                 ) from None


def kind_of(name: str) -> str:
    """The loader for a file name, or :class:`UnsupportedFileType` listing the supported ones."""
    suffix = Path(name).suffix.lower()
    kind = KINDS.get(suffix)
    if kind is None:
        supported = ", ".join(sorted(KINDS))
        raise UnsupportedFileType(f"{name}: unsupported file type {suffix or '(no extension)'!r}"
                                  f"; supported: {supported}")
    return kind


def parse(data: bytes, name: str, kind: str) -> tuple[list[Block], int | None]:
    """Blocks (and page count for PDFs) of ``data``."""
    if kind == "pdf":
        return load_pdf(data, name)
    parsers: dict[str, Callable[[], list[Block]]] = {
        "docx": lambda: load_docx(data, name),
        "markdown": lambda: load_markdown(_decode(data, name)),
        "html": lambda: load_html(_decode(data, name)),
        "text": lambda: [Block(p) for p in _paragraphs(_decode(data, name))],
    }
    return parsers[kind](), None


def load_bytes(data: bytes, name: str, source: str | None = None,
               max_bytes: int | None = None) -> Document:
    """A :class:`Document` from bytes already in memory (uploads)."""
    kind = kind_of(name)
    if max_bytes is not None and len(data) > max_bytes:
        raise DocumentTooLarge(f"{name}: {len(data)} bytes is over the {max_bytes}-byte limit")
    blocks, pages = parse(data, name, kind)
    if not blocks:
        hint = " (a scanned PDF needs OCR first)" if kind == "pdf" else ""
        raise EmptyDocument(f"{name}: no text could be extracted{hint}")
    return Document(source=source or name, name=Path(name).name, kind=kind,
                    sha256=hashlib.sha256(data).hexdigest(), size=len(data), blocks=blocks,
                    pages=pages)


def load_document(path: str | Path, max_bytes: int | None = None) -> Document:
    """Load a file; the size limit is checked from ``stat`` before anything is read."""
    path = Path(path).expanduser()
    shown = str(path)
    kind_of(shown)
    if not path.exists():
        raise UnreadableDocument(f"{shown}: no such file")
    if not path.is_file():
        raise UnreadableDocument(f"{shown}: not a regular file")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise DocumentTooLarge(f"{shown}: {size} bytes is over the {max_bytes}-byte limit "
                               "(raise [rag] max_file_bytes to index it)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableDocument(f"{shown}: cannot be read ({exc.strerror})") from None
    return load_bytes(data, shown, source=str(path.resolve()), max_bytes=max_bytes)
