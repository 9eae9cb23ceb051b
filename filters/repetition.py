"""Repetition: Gopher-style duplicate lines and n-grams (Rae et al. 2021, as datatrove implements
them) and the degenerate loops small models fall into."""

from __future__ import annotations

from collections import Counter

from filters.base import KEEP, Filter, Verdict, drop
from generator.core.records import Record

# Gopher thresholds: the share of characters covered by the most frequent n-gram (n = 2, 3, 4) and
# by all repeated n-grams (n = 5..10).
TOP_NGRAM_FRACTIONS = ((2, 0.20), (3, 0.18), (4, 0.16))
DUP_NGRAM_FRACTIONS = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return list(zip(*(words[i:] for i in range(n)), strict=False))


def _dup_ngram_chars(words: list[str], n: int) -> int:
    """Characters in n-grams that repeat an earlier n-gram, skipping past each repeat (datatrove's
    `find_all_duplicate`)."""
    seen: set[tuple[str, ...]] = set()
    chars = 0
    i, end = 0, len(words) - n + 1
    while i < end:
        gram = tuple(words[i : i + n])
        if gram in seen:
            chars += sum(map(len, gram))
            i += n
        else:
            seen.add(gram)
            i += 1
    return chars


def loop_unit(text: str, min_repeats: int = 4, min_chars: int = 40, max_unit: int = 200) -> int:
    """The length in characters of the unit a loop at the end of `text` repeats, 0 when there is none.

    A generation that loops until the token limit ends in the same unit repeated: its tail is
    periodic, even where the limit cut the last copy short. Candidate periods come from earlier
    occurrences of the last 8 characters (`str.rfind`, no regex), so clean text costs one search.
    Units without a letter or digit ("-----") are separators, not loops."""
    text = text.rstrip()
    n = len(text)
    probe_at = n - 8
    if probe_at < 8:
        return 0
    probe = text[probe_at:]
    search_end = n - 1
    for _ in range(3):
        start = text.rfind(probe, max(0, probe_at - max_unit), search_end)
        if start < 0:
            return 0
        p = probe_at - start
        span = p * max(min_repeats, -(-min_chars // p))
        if span <= n and text[n - span + p :] == text[n - span : n - p]:
            return p if any(c.isalnum() for c in text[n - p :]) else 0
        search_end = start + 7
    return 0


class RepetitionFilter(Filter):
    """Drops texts that repeat themselves: a loop at the end (`degenerate_loop`: one unit repeated
    `loop_repeats` times over at least `loop_min_chars` characters), duplicated lines
    (`repeated_lines`), one n-gram dominating (`repeated_ngrams`) or many repeated long n-grams
    (`duplicate_ngrams`). The line and n-gram rules only apply from `min_words` words on: on short
    texts one repeated phrase is already a large share. `ngram_scale` multiplies the Gopher
    thresholds (above 1 is more lenient)."""

    name = "repetition"

    def __init__(
        self,
        fields: list[str] | None = None,
        min_words: int = 50,
        loop_repeats: int = 4,
        loop_min_chars: int = 40,
        dup_line_fraction: float = 0.3,
        dup_line_char_fraction: float = 0.2,
        ngram_scale: float = 1.0,
    ):
        self.fields = tuple(fields or ("instruction", "output"))
        self.min_words = min_words
        self.loop_repeats = loop_repeats
        self.loop_min_chars = loop_min_chars
        self.dup_line_fraction = dup_line_fraction
        self.dup_line_char_fraction = dup_line_char_fraction
        self.top_fractions = tuple((n, f * ngram_scale) for n, f in TOP_NGRAM_FRACTIONS)
        self.dup_fractions = tuple((n, f * ngram_scale) for n, f in DUP_NGRAM_FRACTIONS)

    def check(self, text: str) -> Verdict:
        """The verdict on one text."""
        unit = loop_unit(text, self.loop_repeats, self.loop_min_chars)
        if unit:
            return drop("degenerate_loop", unit=text.rstrip()[-unit:])
        # Cheap word-count bound first: the split below is the costliest step of the filter.
        if text.count(" ") + text.count("\n") + 1 < self.min_words:
            return KEEP
        words = text.split()
        if len(words) < self.min_words:
            return KEEP
        # Lines: only prose-like lines (4+ words) count, so code's repeated "}" or "return x" don't.
        if text.count("\n") >= 2:
            verdict = self._lines(text)
            if not verdict.keep:
                return verdict
        # The n-gram rules run only on texts that repeat a 5-gram. Every duplicate-n-gram rule
        # (n >= 5) needs one; a text dominated by a short n-gram without repeating any 5-gram (rare
        # outside the loops caught above) passes. A repeated 5-gram repeats its (first, fifth) word
        # pair, and pairs are cheaper to build than 5-tuples: most texts stop at the pairs.
        n_grams = len(words) - 4
        if len(set(zip(words, words[4:], strict=False))) == n_grams:
            return KEEP
        if len(set(zip(words, words[1:], words[2:], words[3:], words[4:], strict=False))) == n_grams:
            return KEEP
        return self._ngrams(words)

    def _ngrams(self, words: list[str]) -> Verdict:
        """The n-gram rules: one n-gram taking too much of the text, or too much of it repeated."""
        total = sum(map(len, words))
        for n, limit in self.top_fractions:
            gram, count = Counter(_ngrams(words, n)).most_common(1)[0]
            if count > 1 and sum(map(len, gram)) * count / total > limit:
                return drop("repeated_ngrams", n=n, ngram=" ".join(gram), count=count)
        for n, limit in self.dup_fractions:
            frac = _dup_ngram_chars(words, n) / total
            if frac > limit:
                return drop("duplicate_ngrams", n=n, fraction=round(frac, 3))
        return KEEP

    def _lines(self, text: str) -> Verdict:
        lines = [ln for ln in (raw.strip() for raw in text.splitlines()) if ln.count(" ") >= 3]
        if len(lines) <= 2:
            return KEEP
        seen: set[str] = set()
        dup_lines = dup_chars = 0
        for ln in lines:
            if ln in seen:
                dup_lines += 1
                dup_chars += len(ln)
            else:
                seen.add(ln)
        if dup_lines / len(lines) > self.dup_line_fraction:
            return drop("repeated_lines", fraction=round(dup_lines / len(lines), 3))
        if dup_chars / len(text) > self.dup_line_char_fraction:
            return drop("repeated_lines", char_fraction=round(dup_chars / len(text), 3))
        return KEEP

    def judge(self, records: list[Record]) -> list[Verdict]:
        out = []
        for r in records:
            verdict = KEEP
            for f in self.fields:
                text = getattr(r, f)
                if text:
                    verdict = self.check(text)
                    if not verdict.keep:
                        verdict = drop(verdict.reason, field=f, **verdict.detail)
                        break
            out.append(verdict)
        return out
