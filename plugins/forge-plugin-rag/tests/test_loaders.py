"""Loaders on real files, and every bad-input case: a clear error naming the file."""

from __future__ import annotations

import io
import os

import pytest
from corpus import PUMP_PDF, write_pdf
from forge_plugin_rag.errors import (
    DocumentTooLarge,
    EmptyDocument,
    EncryptedDocument,
    UnreadableDocument,
    UnsupportedFileType,
)
from forge_plugin_rag.loaders import load_bytes, load_document


def test_pdf_keeps_page_numbers(corpus):
    doc = load_document(corpus[0])
    assert (doc.kind, doc.pages) == ("pdf", len(PUMP_PDF))
    assert {b.page for b in doc.blocks} == set(range(1, len(PUMP_PDF) + 1))
    assert "distilled water" in " ".join(b.text for b in doc.blocks if b.page == 1)


def test_docx_headings_and_table(corpus):
    doc = load_document(corpus[1])
    by_heading = {}
    for block in doc.blocks:
        by_heading.setdefault(block.heading, []).append(block.text)
    assert "Hotel cap Oslo | 190 euros" in by_heading["Expenses"]
    assert any("28 days" in t for t in by_heading["Vacation"])
    assert "Employee handbook" not in [b.text for b in doc.blocks]  # the title is a heading


def test_markdown_headings_and_fenced_code(corpus):
    doc = load_document(corpus[2])
    assert {b.heading for b in doc.blocks} == {"Tomatoes", "Composting", "Watering",
                                               "Pest control", "Pruning roses"}
    code = [b for b in doc.blocks if b.text.startswith("```")]
    assert len(code) == 1 and "# x" in code[0].text  # a '#' in code is not a heading


def test_html_drops_scripts_and_styles(corpus):
    doc = load_document(corpus[3])
    text = " ".join(b.text for b in doc.blocks)
    assert "never indexed" not in text and "color:red" not in text
    assert doc.blocks[0].heading == "Lunar phases"


def test_text_paragraphs():
    doc = load_bytes(b"first para\nstill first\n\n\nsecond", "notes.txt")
    assert [b.text for b in doc.blocks] == ["first para\nstill first", "second"]
    assert doc.kind == "text" and len(doc.sha256) == 64


def test_unsupported_type():
    with pytest.raises(UnsupportedFileType, match=r"slides\.pptx.*'\.pptx'.*supported: "):
        load_bytes(b"x", "slides.pptx")


def test_too_large_is_refused_before_reading(tmp_path):
    huge = tmp_path / "huge.pdf"
    with huge.open("wb") as f:  # a sparse 1 GB file: reading it would take seconds and 1 GB
        f.truncate(1 << 30)
    with pytest.raises(DocumentTooLarge, match=r"huge\.pdf: 1073741824 bytes is over the "
                                                r"104857600-byte limit"):
        load_document(huge, max_bytes=100 * 1024 * 1024)


def test_encrypted_pdf(tmp_path):
    from pypdf import PdfReader, PdfWriter

    plain = write_pdf(tmp_path / "plain.pdf", ["secret text"])
    writer = PdfWriter()
    writer.append(PdfReader(plain))
    writer.encrypt(user_password="hunter2", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(EncryptedDocument, match="locked.pdf: the PDF is encrypted"):
        load_bytes(buffer.getvalue(), "locked.pdf")


def test_damaged_and_fake_pdfs(tmp_path):
    good = write_pdf(tmp_path / "good.pdf", ["hello"]).read_bytes()
    with pytest.raises(UnreadableDocument, match="cut.pdf: the PDF cannot be read"):
        load_bytes(good[: len(good) // 3], "cut.pdf")
    with pytest.raises(UnreadableDocument, match="fake.pdf: not a PDF file"):
        load_bytes(b"hello, I am text", "fake.pdf")


def test_pdf_without_text(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()  # e.g. a scan: pages, no text layer
    path = tmp_path / "scan.pdf"
    pdf.output(str(path))
    with pytest.raises(EmptyDocument, match="scan.pdf: no text could be extracted.*OCR"):
        load_document(path)


def test_bad_docx_and_bad_encoding(tmp_path):
    with pytest.raises(UnreadableDocument, match="x.docx: not a readable DOCX"):
        load_bytes(b"PK\x03\x04 not really a zip", "x.docx")
    with pytest.raises(UnreadableDocument, match="latin.md: not UTF-8"):
        load_bytes("caf\xe9".encode("latin-1"), "latin.md")


def test_missing_and_directory(tmp_path):
    with pytest.raises(UnreadableDocument, match="no such file"):
        load_document(tmp_path / "nope.md")
    folder = tmp_path / "folder.md"
    folder.mkdir()
    with pytest.raises(UnreadableDocument, match="not a regular file"):
        load_document(folder)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_permissions(tmp_path):
    path = tmp_path / "locked.md"
    path.write_text("# x\n\ntext")
    path.chmod(0)
    with pytest.raises(UnreadableDocument, match="cannot be read"):
        load_document(path)
