"""Chunks: passages of a document cut along its headings and paragraphs, sized in units of the
served model's tokenizer (or in words when there is none).

A heading starts a new chunk (sections never share one, unless the open chunk is still shorter
than `min_size`); paragraphs are packed into a chunk while it stays within `size`; a paragraph
longer than `size` is cut at the last sentence end that leaves the piece at least half full, else
at a unit boundary. A chunk cut inside a section starts `overlap` units before the previous one
ended. Spans are character offsets in the document's text, so a chunk is `text[start:end]`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

from generator.documents.read import Document

# A text's units as (start, end) character spans: words, or a tokenizer's tokens.
Units = Callable[[str], list[tuple[int, int]]]
_WORD = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"[.!?:;][\"')\]]*$")


def word_units(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _WORD.finditer(text)]


def tokenizer_units(tokenizer: object) -> Units:
    """Units from a (fast) Hugging Face tokenizer's offset mapping."""

    def units(text: str) -> list[tuple[int, int]]:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)  # type: ignore[operator]
        return [(a, b) for a, b in enc["offset_mapping"] if b > a]

    return units


@dataclass(frozen=True)
class Chunk:
    document: int  # index in the corpus
    index: int  # in its document
    start: int
    end: int
    text: str
    section: str  # the heading path, "Install > From source"; "" before any heading
    page: str | None  # "3" or "3-4" for paged formats
    size: int  # units


@dataclass(frozen=True)
class Sizing:
    size: int = 384
    overlap: int = 32
    min_size: int = 24


def chunk_document(doc: Document, number: int, units: Units, sizing: Sizing) -> list[Chunk]:
    """`doc`'s chunks (`number` is its index in the corpus)."""
    spans = units(doc.text)
    starts = [s for s, _ in spans]
    cuts = _Cuts(doc, number, spans)
    path: list[tuple[int, str]] = []  # (level, heading) of the open sections
    cur: list[int] | None = None  # units [first, last) of the open chunk
    section = ""
    for block in doc.blocks:
        lo, hi = bisect.bisect_left(starts, block.start), bisect.bisect_left(starts, block.end)
        if block.heading:
            if cur is not None and cur[1] - cur[0] >= sizing.min_size:
                cuts.emit(cur, section)
                cur = None
            while path and path[-1][0] >= block.heading:
                path.pop()
            path.append((block.heading, " ".join(doc.block_text(block).lstrip("#").split())))
        if cur is None or block.heading:  # a short section joined to the next is named after the next
            cur, section = cur or [lo, lo], " > ".join(h for _, h in path)
        while hi - cur[0] > sizing.size:  # the block does not fit: close the chunk, go on inside the section
            cut = _cut(doc.text, spans, cur, hi, sizing.size)
            cuts.emit([cur[0], cut], section)
            cur = [max(cut - sizing.overlap, cur[0] + 1), cut]
        cur[1] = hi
    if cur is not None and cur[1] > cur[0]:
        cuts.emit(cur, section)
    return cuts.chunks


class _Cuts:
    """The chunks of one document, as they are cut."""

    def __init__(self, doc: Document, number: int, spans: list[tuple[int, int]]) -> None:
        self.doc, self.number, self.spans = doc, number, spans
        self.block_starts = [b.start for b in doc.blocks]
        self.chunks: list[Chunk] = []

    def emit(self, cur: list[int], section: str) -> None:
        start, end = self.spans[cur[0]][0], self.spans[cur[1] - 1][1]
        first = max(0, bisect.bisect_right(self.block_starts, start) - 1)
        last = bisect.bisect_left(self.block_starts, end)
        pages = sorted({b.page for b in self.doc.blocks[first:last] if b.page is not None})
        page = None if not pages else str(pages[0]) if pages[0] == pages[-1] else f"{pages[0]}-{pages[-1]}"
        text = self.doc.text[start:end]
        self.chunks.append(Chunk(self.number, len(self.chunks), start, end, text, section, page, cur[1] - cur[0]))


def _cut(text: str, spans: list[tuple[int, int]], cur: list[int], hi: int, size: int) -> int:
    """Where the open chunk `cur` ends when the paragraph ending at unit `hi` does not fit: after its
    whole paragraphs when they fill at least half of it, else at the last sentence end past half,
    else at `size` units."""
    first, done = cur
    if done - first >= size // 2:
        return done
    limit = min(hi, first + size)
    for i in range(limit - 1, first + size // 2 - 1, -1):
        if _SENTENCE_END.search(text[spans[i][0] : spans[i][1]]):
            return i + 1
    return limit
