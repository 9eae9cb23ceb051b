"""Lexical diversity: distinct-n (Li et al., 2016) and self-BLEU (Zhu et al., 2018, Texygen).

Texts are lowercased and split into words and punctuation marks. Self-BLEU scores each text with
BLEU-4 against all the other texts as references (uniform weights; a precision with no match
counts as 0.1 matches, NLTK's `SmoothingFunction().method1`; the brevity penalty takes the
closest reference length, the shorter on a tie) and averages. Computed in one pass over the
n-grams instead of n BLEU calls over n - 1 references: for each n-gram the largest and second
largest count in any one text are kept, so "the largest count in any *other* text" is a lookup.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"\w+|[^\w\s]")
SMOOTHING = 0.1  # matches a precision with none is given (NLTK's method1 epsilon)


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _grams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the texts (n-grams do not cross texts); 0.0 without any."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        grams = _grams(tokens(text), n)
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


class _Top2:
    """Per n-gram, the largest count in one text (and which text) and the second largest."""

    def __init__(self) -> None:
        self.best: dict[tuple[str, ...], tuple[int, int]] = {}  # gram -> (count, text)
        self.second: dict[tuple[str, ...], int] = {}

    def add(self, counts: Counter[tuple[str, ...]], owner: int) -> None:
        for gram, c in counts.items():
            best = self.best.get(gram)
            if best is None:
                self.best[gram] = (c, owner)
            elif c > best[0]:
                self.second[gram] = best[0]
                self.best[gram] = (c, owner)
            elif c > self.second.get(gram, 0):
                self.second[gram] = c

    def other(self, gram: tuple[str, ...], owner: int) -> int:
        """The largest count of `gram` in any text but `owner`."""
        count, who = self.best[gram]
        return self.second.get(gram, 0) if who == owner else count


def _closest_other_length(lengths: list[int], length: int) -> int:
    """The length among `lengths` (sorted, `length` once in it for the text itself) closest to
    `length`, the shorter on a tie, with the text's own entry left out."""
    at = bisect.bisect_left(lengths, length)
    others = lengths[:at] + lengths[at + 1 :]
    j = bisect.bisect_left(others, length)
    near = [others[k] for k in (j - 1, j) if 0 <= k < len(others)]
    return min(near, key=lambda r: (abs(r - length), r))


def self_bleu(texts: Sequence[str], max_n: int = 4) -> float:
    """Mean BLEU-`max_n` of each text against all the others; 0.0 for fewer than two texts."""
    if len(texts) < 2:
        return 0.0
    words = [tokens(t) for t in texts]
    counts = [[Counter(_grams(w, n)) for n in range(1, max_n + 1)] for w in words]
    tops = [_Top2() for _ in range(max_n)]
    for i, per_order in enumerate(counts):
        for top, c in zip(tops, per_order):
            top.add(c, i)
    lengths = sorted(len(w) for w in words)
    total = 0.0
    for i, per_order in enumerate(counts):
        total += _bleu(per_order, tops, i, len(words[i]), _closest_other_length(lengths, len(words[i])))
    return total / len(texts)


def _bleu(per_order: list[Counter[tuple[str, ...]]], tops: list[_Top2], i: int, length: int, ref: int) -> float:
    if length == 0:
        return 0.0
    logs = []
    for n, (c, top) in enumerate(zip(per_order, tops)):
        matches = sum(min(k, top.other(g, i)) for g, k in c.items())
        if n == 0 and matches == 0:
            return 0.0  # no word in common with any other text
        denominator = max(1, sum(c.values()))
        logs.append(math.log((matches or SMOOTHING) / denominator))
    brevity = 1.0 if length > ref else math.exp(1 - ref / length)
    return brevity * math.exp(sum(logs) / len(logs))
