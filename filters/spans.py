"""Verbatim spans shared with a set of private texts: an index of their word k-grams (hashed, sorted,
searched in batches with numpy), the longest run of consecutive words a text shares with any one
private text, and masking of every shared span.

Words are the lower-cased `\\w+` runs of a text: case, punctuation and spacing do not hide a copy.
The index holds one 64-bit hash per k-gram position (12 bytes a position with its place), so
100,000 private texts of 60 words take about 70 MB; a query is one `searchsorted` for a whole batch,
then an exact word-by-word extension along each diagonal that a hit opens, so the longest span is
exact (never a hash-collision artefact) and is not limited by `k`.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

K = 8
"""Words of the k-grams indexed: the shortest shared span found, and the span masked in the clear."""
MAX_OCCURRENCES = 16
"""Places looked at per k-gram hash (boilerplate that many private texts share opens only this many)."""
_WORD = re.compile(r"\w+")
_P = np.uint64(0x100000001B3)  # FNV prime: a multiplier with good bit mixing in uint64 arithmetic
_UNKNOWN = -2  # a word no private text has: no k-gram through it can match
_SEPARATOR = -1  # between private texts (and fields): no k-gram crosses it


def words(text: str) -> list[tuple[str, int, int]]:
    """The text's words (lower-cased) with their character spans."""
    return [(m.group(0).lower(), m.start(), m.end()) for m in _WORD.finditer(text)]


def text_hash(text: str) -> str:
    """A short stable name for a private text, shown instead of it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def word_values(toks: Sequence[str]) -> np.ndarray:
    """Each word's 32-bit hash: what the k-gram hashes are made of, so that a k-gram's hash needs
    no vocabulary (a saved set of hashes masks text on its own: `KgramMask`)."""
    return np.fromiter((zlib.crc32(w.encode("utf-8")) for w in toks), np.uint64, count=len(toks))


def _kgram_hashes(values: np.ndarray, valid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every k-gram of word `values` whose words are all `valid`, and their starts."""
    n = len(values) - k + 1
    if n <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    bad = np.concatenate(([0], np.cumsum(~valid)))
    ok = (bad[k:] - bad[:-k]) == 0
    h = np.zeros(n, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            h = h * _P + (values[j : j + n] + np.uint64(1))
    starts = np.flatnonzero(ok)
    return h[starts], starts


class KgramMask:
    """Masks every span of `k` words or more whose k-grams are among `hashes` (sorted): what a run
    keeps (`privacy_kgrams.npy`, hashes only) so that a report written later masks the same spans."""

    def __init__(self, hashes: np.ndarray, k: int = K):
        self.hashes, self.k = hashes, k

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:
            np.save(f, self.hashes)

    @classmethod
    def load(cls, path: Path) -> KgramMask:
        return cls(np.load(path))

    def shared(self, text: str) -> list[tuple[int, int]]:
        """Character spans of `text` covered by a k-gram some private text holds, merged."""
        toks = words(text)
        if len(toks) < self.k or not len(self.hashes):
            return []
        values = word_values([w for w, _, _ in toks])
        h, starts = _kgram_hashes(values, np.ones(len(values), bool), self.k)
        at = np.minimum(np.searchsorted(self.hashes, h), len(self.hashes) - 1)
        spans: list[tuple[int, int]] = []
        for i in starts[self.hashes[at] == h].tolist():
            a, b = toks[i][1], toks[i + self.k - 1][2]
            if spans and a <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], b))
            else:
                spans.append((a, b))
        return spans

    def mask_all(self, value: Any) -> Any:
        """`mask` applied to every string of a JSON-like value (dicts, lists, tuples)."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {k: self.mask_all(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.mask_all(v) for v in value]
        return value

    def mask(self, text: str) -> str:
        """`text` with every shared span replaced by a marker that names its length only."""
        spans = self.shared(text)
        if not spans:
            return text
        parts, pos = [], 0
        for a, b in spans:
            parts.append(text[pos:a])
            parts.append(f"[private text: {len(words(text[a:b]))} words]")
            pos = b
        parts.append(text[pos:])
        return "".join(parts)


@dataclass(frozen=True)
class Span:
    """The longest run of words a text shares with one private text."""

    words: int  # 0 when none of K words or more
    source: int = -1  # the private text's index
    start: int = 0  # character span in the queried text
    end: int = 0


NO_SPAN = Span(0)


class SpanIndex:
    """The k-grams of a list of private texts, for longest shared spans and masking."""

    def __init__(self, texts: Sequence[str], k: int = K):
        self.k = k
        self.vocab: dict[str, int] = {}
        ids: list[int] = []
        starts = []
        for text in texts:
            starts.append(len(ids))
            ids.extend(self.vocab.setdefault(w, len(self.vocab)) for w, _, _ in words(text))
            ids.append(_SEPARATOR)
        self.ids = np.asarray(ids, np.int32)
        self.starts = np.asarray(starts, np.int64)
        self.lengths = np.diff(np.append(self.starts, len(self.ids))) - 1  # words per private text
        self.values = word_values(list(self.vocab))  # by vocabulary id
        h, pos = self._kgrams(self.ids)
        order = np.argsort(h, kind="stable")
        self.hashes, self.positions = h[order], pos[order].astype(np.int64)
        self.masker = KgramMask(self.hashes, k)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.starts.nbytes + self.hashes.nbytes + self.positions.nbytes)

    def _ids(self, toks: list[tuple[str, int, int]]) -> np.ndarray:
        return np.fromiter((self.vocab.get(w, _UNKNOWN) for w, _, _ in toks), np.int32, count=len(toks))

    def _kgrams(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valid = ids >= 0
        return _kgram_hashes(np.where(valid, self.values[np.maximum(ids, 0)], 0).astype(np.uint64), valid, self.k)

    def _hits(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Query k-gram starts that occur in the index, with each one's range in the sorted hashes."""
        h, starts = self._kgrams(ids)
        lo = np.searchsorted(self.hashes, h, "left")
        hi = np.searchsorted(self.hashes, h, "right")
        found = hi > lo
        return starts[found], lo[found], hi[found]

    def longest(self, text: str) -> Span:
        """The longest run of consecutive words `text` shares with any one private text."""
        return self.longest_many([text])[0]

    def longest_many(self, texts: Sequence[str]) -> list[Span]:
        """`longest` of each text, the k-grams of all of them looked up at once."""
        toks = [words(t) for t in texts]
        offsets = np.zeros(len(texts) + 1, np.int64)
        offsets[1:] = np.cumsum([len(t) + 1 for t in toks])
        ids = np.full(int(offsets[-1]), _UNKNOWN, np.int32)  # each text ends with a word no k-gram crosses
        vocab = self.vocab
        flat = np.fromiter((vocab.get(w, _UNKNOWN) for t in toks for w, _, _ in t), np.int32)
        keep = np.ones(len(ids), bool)
        keep[offsets[1:] - 1] = False
        ids[keep] = flat
        starts, lo, hi = self._hits(ids)
        owner = np.searchsorted(offsets, starts, "right") - 1
        best = [NO_SPAN] * len(texts)
        covered: set[tuple[int, int]] = set()
        for i, a, b, t in zip(starts.tolist(), lo.tolist(), hi.tolist(), owner.tolist()):
            for g in self.positions[a : min(b, a + MAX_OCCURRENCES)].tolist():
                if (g - i, i) in covered:
                    continue
                length = self._extend(ids, i, g, covered)
                if length > best[t].words:
                    source = int(np.searchsorted(self.starts, g, "right") - 1)
                    first = i - int(offsets[t])
                    best[t] = Span(length, source, toks[t][first][1], toks[t][first + length - 1][2])
        return best

    def _extend(self, ids: np.ndarray, i: int, g: int, covered: set[tuple[int, int]]) -> int:
        """Words matching from query word `i` and private word `g` on (the hashes said at least k);
        the diagonal's later starts inside the match are marked covered."""
        if not np.array_equal(ids[i : i + self.k], self.ids[g : g + self.k]):
            return 0  # a hash collision, not a shared k-gram
        n = self.k
        while i + n < len(ids) and g + n < len(self.ids) and ids[i + n] == self.ids[g + n]:
            n += 1
        covered.update((g - i, i + j) for j in range(n - self.k + 1))
        return n

    def shared(self, text: str) -> list[tuple[int, int]]:
        return self.masker.shared(text)

    def mask(self, text: str) -> str:
        return self.masker.mask(text)
