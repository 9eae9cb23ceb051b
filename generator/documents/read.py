"""Reading the user's documents into text with its structure: blocks (paragraphs, list items,
table rows) with the heading level of those that are headings and the page they stand on.

One maintained library per format, no hand-written parsing of a format:

- Markdown and MDX (`.md`, `.markdown`, `.mdx`), plain text (`.txt`, `.rst`): the file's own text
  (UTF-8, BOM and CRLF normalised); paragraphs are split at blank lines, ATX headings (`# ...`)
  outside code fences are headings; MDX/HTML comments are left out.
- HTML (`.html`, `.htm`, `.xhtml`): BeautifulSoup over lxml; scripts, styles, navigation and
  footers are dropped, the `<main>` or `<article>` is read when the page has one; `h1`-`h6` are
  headings, table rows are read cell by cell.
- PDF: pypdf's text layer, page by page (the block's page number is kept); an encrypted file that
  the empty password does not open, a file pypdf cannot read, or one with no text layer (a scan)
  is an error naming what to do.
- DOCX: python-docx, paragraphs and tables in document order; styles named `Title` or
  `Heading N` are headings.

A document's `text` is its blocks joined by blank lines; a block's span and a chunk's span are
character offsets in that text (for Markdown and text files that is the file's text, normalised).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from generator.core.errors import ConfigError

MARKDOWN = (".md", ".markdown", ".mdx")
TEXT = (".txt", ".text", ".rst")
HTML = (".html", ".htm", ".xhtml")
PDF = (".pdf",)
DOCX = (".docx",)
SUFFIXES = MARKDOWN + TEXT + HTML + PDF + DOCX
# A PDF with fewer visible characters per page than this has no usable text layer (a scan).
MIN_CHARS_PER_PAGE = 20


class DocumentError(ConfigError):
    """A document that cannot be read; `reason` is the stable code the funnel counts when skipped."""

    def __init__(self, path: str | Path, problem: str, fix: str, reason: str) -> None:
        super().__init__(f"{path}: {problem}; {fix}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class Block:
    """A paragraph, list item, table row or heading: its span in the document's text."""

    start: int
    end: int
    heading: int = 0  # 1-6 for a heading, 0 for body text
    page: int | None = None  # 1-based, for formats with pages


@dataclass
class Document:
    path: str  # as the config gave it (or as found in a folder given there)
    sha256: str  # of the file's bytes
    kind: str  # markdown, text, html, pdf, docx
    text: str
    blocks: list[Block] = field(default_factory=list)
    pages: int | None = None
    size: int = 0  # bytes

    def block_text(self, block: Block) -> str:
        return self.text[block.start : block.end]


class TextBuilder:
    """Collects blocks into one text, blank-line separated."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.blocks: list[Block] = []
        self.length = 0

    def add(self, text: str, heading: int = 0, page: int | None = None) -> None:
        text = text.strip()
        if not text:
            return
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        self.blocks.append(Block(self.length, self.length + len(text), heading, page))
        self.parts.append(text)
        self.length += len(text)

    def text(self) -> str:
        return "".join(self.parts)


def read_document(path: Path, label: str | None = None) -> Document:
    """One document, read by the library for its format (see the module docstring)."""
    label = label or str(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DocumentError(
            label,
            f"unknown extension {path.suffix or '(none)'!r}",
            f"documents are {', '.join(SUFFIXES)}; convert it to one of them or leave it out of documents.paths",
            "unknown_extension",
        )
    data = path.read_bytes()
    if not data.strip():
        raise DocumentError(label, "the file is empty", "leave it out of documents.paths", "empty_document")
    kind, reader = _READERS[suffix]
    text, blocks, pages = reader(path, data, label)
    if not text.strip():
        raise DocumentError(label, "no text could be extracted", "check the file opens and holds text", "no_text")
    return Document(label, hashlib.sha256(data).hexdigest(), kind, text, blocks, pages, len(data))


def _decode(data: bytes, label: str) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            label, f"not valid UTF-8 (byte {exc.start})", "save the file as UTF-8", "not_utf8"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


_FENCE = re.compile(r"^\s*(```|~~~)")
_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_COMMENT = re.compile(r"<!--.*?-->", re.S)


def _markdown(path: Path, data: bytes, label: str) -> tuple[str, list[Block], None]:
    text = _COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), _decode(data, label))
    return text, list(_markdown_blocks(text, headings=True)), None


def _plain(path: Path, data: bytes, label: str) -> tuple[str, list[Block], None]:
    text = _decode(data, label)
    return text, list(_markdown_blocks(text, headings=False)), None


def _markdown_blocks(text: str, headings: bool) -> Iterator[Block]:
    """Paragraphs at blank lines (a fenced code block is one paragraph), headings on their own line."""
    start: int | None = None
    fenced = False
    pos = 0
    for line in text.split("\n"):
        end = pos + len(line)
        if _FENCE.match(line):
            fenced = not fenced
        heading = headings and not fenced and _ATX.match(line)
        if heading:
            if start is not None:
                yield Block(start, pos - 1)
            yield Block(pos, end, len(heading.group(1)))
            start = None
        elif not line.strip() and not fenced:
            if start is not None:
                yield Block(start, pos - 1)
            start = None
        elif start is None:
            start = pos
        pos = end + 1
    if start is not None:
        yield Block(start, len(text))


_DROP_TAGS = ("script", "style", "noscript", "template", "nav", "footer", "aside", "form", "svg", "iframe")
_BOILERPLATE = re.compile(r"^(nav|navbar|menu|sidebar|breadcrumbs?|footer|toc|skip)([-_]|$)", re.I)
_KEEP_TAGS = ("html", "body", "main", "article")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u00b6\ufeff"), " ")  # zero-width space, pilcrow anchors, BOM
_HTML_BLOCKS = ("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "dt", "dd", "blockquote", "tr", "caption")


def _html(path: Path, data: bytes, label: str) -> tuple[str, list[Block], None]:
    import warnings

    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():  # XHTML pages are HTML to read
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(data, "lxml")
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    for tag in soup.find_all(attrs={"id": _BOILERPLATE}) + soup.find_all(attrs={"class": _BOILERPLATE}):
        if not tag.decomposed and tag.name not in _KEEP_TAGS:
            tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    out = TextBuilder()
    for el in root.find_all(_HTML_BLOCKS):
        if el.find_parent(_HTML_BLOCKS) is not None:
            continue  # read with its enclosing block
        if el.name == "tr":
            cells = [c.get_text(" ", strip=True) for c in el.find_all(["td", "th"])]
            out.add(" | ".join(c for c in cells if c))
        elif el.name == "pre":
            out.add(el.get_text())
        else:
            heading = int(el.name[1]) if re.fullmatch(r"h[1-6]", el.name) else 0
            out.add(" ".join(el.get_text(" ", strip=True).translate(_INVISIBLE).split()), heading)
    return out.text(), out.blocks, None


def _pdf(path: Path, data: bytes, label: str) -> tuple[str, list[Block], int]:
    import pypdf
    from pypdf.errors import PdfReadError, PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its repair notes are no news to the user
    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(
                label,
                "the PDF is encrypted with a password",
                "decrypt it first (e.g. `qpdf --decrypt --password=... in.pdf out.pdf`) and give that file",
                "encrypted_pdf",
            )
        pages = [page.extract_text() or "" for page in reader.pages]
    except DocumentError:
        raise
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, OSError) as err:
        raise DocumentError(
            label,
            f"pypdf cannot read it as a PDF ({type(err).__name__}: {str(err)[:120]})",
            "check it opens in a PDF viewer; repair or re-export it (e.g. `qpdf in.pdf out.pdf`)",
            "broken_pdf",
        ) from None
    if sum(len(p.strip()) for p in pages) < MIN_CHARS_PER_PAGE * max(1, len(pages)) / 4:
        raise DocumentError(
            label,
            f"no text layer ({len(pages)} pages, a scan?)",
            "run OCR on it first (e.g. `ocrmypdf in.pdf out.pdf`) and give that file",
            "no_text",
        )
    out = TextBuilder()
    for number, page in enumerate(pages, 1):
        for para in re.split(r"\n\s*\n", page.replace("\r", "")):
            out.add(para, page=number)
    return out.text(), out.blocks, len(pages)


def _docx(path: Path, data: bytes, label: str) -> tuple[str, list[Block], None]:
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as err:
        raise DocumentError(
            label,
            f"python-docx cannot read it as a DOCX file ({type(err).__name__})",
            "open and save it again as .docx (Word, LibreOffice)",
            "broken_docx",
        ) from None
    out = TextBuilder()
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                cells = []
                for cell in row.cells:
                    text = " ".join(cell.text.split())
                    if text and (not cells or cells[-1] != text):  # merged cells repeat
                        cells.append(text)
                out.add(" | ".join(cells))
        else:
            out.add(item.text, _docx_heading(item.style.name if item.style is not None else ""))
    return out.text(), out.blocks, None


def _docx_heading(style: str) -> int:
    if style == "Title":
        return 1
    match = re.fullmatch(r"[Hh]eading ?([1-6])", style)
    return int(match.group(1)) if match else 0


_READERS = {
    **dict.fromkeys(MARKDOWN, ("markdown", _markdown)),
    **dict.fromkeys(TEXT, ("text", _plain)),
    **dict.fromkeys(HTML, ("html", _html)),
    **dict.fromkeys(PDF, ("pdf", _pdf)),
    **dict.fromkeys(DOCX, ("docx", _docx)),
}
