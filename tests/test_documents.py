"""Reading and chunking the user's documents (generator/documents/): every format through its
library, page and section numbers, the one-line errors, chunk sizes and spans. No server."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.core.errors import ConfigError
from generator.documents.chunk import Sizing, chunk_document, word_units
from generator.documents.corpus import read_corpus
from generator.documents.read import DocumentError, read_document

MARKDOWN = """<!-- licence header -->
# Guide

Intro paragraph about the tool.

## Install

Run `pip install tool` first. Then check the version.

```bash
# not a heading
tool --version
```

## Use

Call tool with a file.
"""


def write_pdf(path: Path, pages: list[str], password: str | None = None) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    if password is not None:
        pdf.set_encryption(owner_password="owner", user_password=password)
    pdf.output(str(path))
    return path


def write_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Handbook", level=1)
    document.add_paragraph("Staff take 25 days of leave a year.")
    document.add_heading("Travel", level=2)
    document.add_paragraph("Trains are booked through the travel desk.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "City", "Budget"
    table.cell(1, 0).text, table.cell(1, 1).text = "Paris", "120 EUR"
    document.save(str(path))
    return path


def test_markdown_blocks_headings_and_comments(tmp_path):
    path = tmp_path / "g.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    doc = read_document(path)
    headings = [(b.heading, doc.block_text(b)) for b in doc.blocks if b.heading]
    assert headings == [(1, "# Guide"), (2, "## Install"), (2, "## Use")]
    assert "licence" not in doc.text
    assert any("# not a heading" in doc.block_text(b) and not b.heading for b in doc.blocks)
    assert doc.kind == "markdown" and len(doc.sha256) == 64


def test_text_bom_and_crlf(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffFirst line.\r\nStill first.\r\n\r\nSecond paragraph.".encode())
    doc = read_document(path)
    assert [doc.block_text(b) for b in doc.blocks] == ["First line.\nStill first.", "Second paragraph."]


def test_html_drops_navigation_and_scripts(tmp_path):
    path = tmp_path / "p.html"
    path.write_text(
        "<html><head><script>var x=1;</script></head><body><nav>Home | About</nav>"
        "<div class='no-sidebar'><h1>Title&#182;</h1><p>Body <b>text</b> here.</p>"
        "<table><tr><td>a</td><td>1</td></tr></table><div class='footer'>Copyright</div></div></body></html>",
        encoding="utf-8",
    )
    doc = read_document(path)
    assert [(b.heading, doc.block_text(b)) for b in doc.blocks] == [(1, "Title"), (0, "Body text here."), (0, "a | 1")]


def test_pdf_pages_are_kept(tmp_path):
    path = write_pdf(tmp_path / "r.pdf", ["The first page talks about apples.", "The second page is about pears."])
    doc = read_document(path)
    assert doc.pages == 2 and doc.kind == "pdf"
    assert [b.page for b in doc.blocks] == [1, 2]
    assert "pears" in doc.block_text(doc.blocks[1])
    chunks = chunk_document(doc, 0, word_units, Sizing(size=8, overlap=0, min_size=1))
    assert [c.page for c in chunks] == ["1", "2"]


def test_docx_headings_and_tables(tmp_path):
    doc = read_document(write_docx(tmp_path / "h.docx"))
    assert [(b.heading, doc.block_text(b)) for b in doc.blocks][-2:] == [(0, "City | Budget"), (0, "Paris | 120 EUR")]
    chunks = chunk_document(doc, 0, word_units, Sizing(size=100, overlap=0, min_size=1))
    assert [c.section for c in chunks] == ["Handbook", "Handbook > Travel"]


@pytest.mark.parametrize(
    ("name", "content", "reason", "message"),
    [
        ("a.xyz", b"text", "unknown_extension", r"a.xyz: unknown extension '.xyz'; documents are"),
        ("e.md", b"  \n", "empty_document", r"e.md: the file is empty"),
        ("b.pdf", b"%PDF-1.4 this is not a pdf", "broken_pdf", r"b.pdf: pypdf cannot read it as a PDF"),
        ("b.docx", b"not a zip", "broken_docx", r"b.docx: python-docx cannot read it"),
        ("l.txt", b"caf\xe9", "not_utf8", r"l.txt: not valid UTF-8"),
    ],
    ids=["extension", "empty", "broken-pdf", "broken-docx", "latin1"],
)
def test_bad_files_one_line(tmp_path, name, content, reason, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DocumentError, match=message) as err:
        read_document(path, name)
    assert err.value.reason == reason and "\n" not in str(err.value)


def test_encrypted_and_textless_pdf(tmp_path):
    with pytest.raises(DocumentError, match="encrypted with a password; decrypt it first") as err:
        read_document(write_pdf(tmp_path / "s.pdf", ["secret text"], password="pw"))
    assert err.value.reason == "encrypted_pdf"
    with pytest.raises(DocumentError, match="no text layer") as err:
        read_document(write_pdf(tmp_path / "blank.pdf", ["", ""]))
    assert err.value.reason == "no_text"


def test_corpus_folders_globs_skip_and_missing(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(MARKDOWN, encoding="utf-8")
    (tmp_path / "docs" / "b.txt").write_text("Plain notes.", encoding="utf-8")
    (tmp_path / "docs" / "bad.pdf").write_bytes(b"")
    corpus = read_corpus(["docs", "docs/*.md"], tmp_path, skip_bad=True)
    assert [d.path for d in corpus.documents] == ["docs/a.md", "docs/b.txt"]
    assert [(e.path, e.reason) for e in corpus.skipped] == [("docs/bad.pdf", "empty_document")]
    with pytest.raises(DocumentError, match="docs/bad.pdf: the file is empty"):
        read_corpus(["docs"], tmp_path)
    with pytest.raises(ConfigError, match=r"documents.paths: 'nope/' not found"):
        read_corpus(["nope/"], tmp_path)
    with pytest.raises(ConfigError, match="matches no file"):
        read_corpus(["docs/*.html"], tmp_path)


def test_corpus_digest_ignores_names(tmp_path):
    (tmp_path / "a.md").write_text("Same text.", encoding="utf-8")
    (tmp_path / "b.md").write_text("Same text.", encoding="utf-8")
    assert read_corpus(["a.md"], tmp_path).digest == read_corpus(["b.md"], tmp_path).digest


def test_table_source_rows_are_documents(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"body": "One."}\n{"body": "Two."}\n', encoding="utf-8")
    corpus = read_corpus(["t.jsonl"], tmp_path, text_column="body")
    assert [d.text for d in corpus.documents] == ["One.", "Two."]
    with pytest.raises(ConfigError, match="no 'text' column"):
        read_corpus(["t.jsonl"], tmp_path)


def test_chunks_cut_at_headings_paragraphs_and_sentences(tmp_path):
    sentences = " ".join(f"Sentence number {i} is here." for i in range(40))  # 200 words, one paragraph
    path = tmp_path / "long.md"
    path.write_text(f"# A\n\nShort intro.\n\n# B\n\n{sentences}\n\nTail paragraph.\n", encoding="utf-8")
    doc = read_document(path)
    chunks = chunk_document(doc, 3, word_units, Sizing(size=50, overlap=10, min_size=1))
    assert chunks[0].section == "A" and chunks[0].text == "# A\n\nShort intro."
    assert {c.section for c in chunks[1:]} == {"B"}
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text and c.size <= 50 and c.document == 3
    middle = chunks[1:-1]
    assert all(c.text.endswith(".") for c in middle)  # cut at sentence ends
    assert middle[1].start < middle[0].end  # overlap inside a section
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_small_section_joins_the_next(tmp_path):
    path = tmp_path / "s.md"
    path.write_text("# Top\n\n## Sub\n\nBody text of the sub section.\n", encoding="utf-8")
    chunks = chunk_document(read_document(path), 0, word_units, Sizing(size=50, overlap=0, min_size=5))
    assert len(chunks) == 1 and chunks[0].section == "Top > Sub"
