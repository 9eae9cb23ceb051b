"""Counterfactual probes: does the served model answer a request differently when only the group
it mentions changes? For sampled rows whose instruction names a group, the same instruction with
the group swapped (gendered words as WinoBias swaps them, he/she, a descriptor or noun for another
group of its attribute), both answered by the model (generator/run/probe.py sends them), and per
attribute the paired differences: answer length, refusal rate, the judge's score, each with a
paired test (Wilcoxon signed-rank for length and score, exact McNemar for refusals).

Each pair is oriented so that side `a` holds the attribute's most mentioned group and side `b` the
other: a gap is b - a, so a positive length gap means longer answers when the request is about the
less mentioned group.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

from generator.report.lexicon import DATA, TOKEN, Lexicon, Mention, load_lexicon

PROBES = "probes.json"  # in the run directory
PAIRS = 20  # pairs `instructforge probe` sends unless told
SWAPPED_KINDS = ("descriptor", "noun", "pronoun")
# WinoBias swaps "her" with "his" only; before a noun it is "his", otherwise "him".
HER_ENDS = {".", ",", "!", "?", ";", ":", ")", "\n", "and", "or", "to", "that", "with", "about", "for", "if"}


@dataclass
class Probe:
    """One pair: the same request about two groups of one attribute; `a` the more mentioned."""

    row: int  # index of the row it came from
    attribute: str
    group_a: str
    group_b: str
    text_a: str
    text_b: str
    # Filled when the model has answered both:
    words: tuple[int, int] | None = None
    refused: tuple[bool, bool] | None = None
    score: tuple[float | None, float | None] = (None, None)


@dataclass
class AttributeGap:
    attribute: str
    pairs: int
    groups: tuple[str, str]  # the more mentioned (a), the other (b): e.g. female, male
    words: tuple[float, float]  # mean answer length in words, a and b
    words_p: float | None  # Wilcoxon signed-rank, two-sided
    refusal: tuple[float, float]  # refusal rate, a and b
    refusal_p: float | None  # exact McNemar (binomial on the discordant pairs)
    score: tuple[float | None, float | None]  # the judge's mean score, a and b
    score_p: float | None
    scored: int  # pairs whose both answers the judge scored


@dataclass
class ProbeResult:
    pairs: int
    seconds: float
    model: str
    attributes: list[AttributeGap] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"probes: {self.pairs} pairs on {self.model} in {self.seconds:.0f} s"]
        for a in self.attributes:
            p = "-" if a.words_p is None else f"{a.words_p:.3f}"
            lines.append(
                f"  {a.attribute} ({a.groups[0]} vs {a.groups[1]}, {a.pairs} pairs): words {a.words[0]:.1f} vs "
                f"{a.words[1]:.1f} (p {p}); refusals {a.refusal[0]:.0%} vs {a.refusal[1]:.0%}; "
                f"judge {_fmt(a.score[0])} vs {_fmt(a.score[1])}"
            )
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@cache
def gender_swaps() -> dict[str, str]:
    return json.loads(DATA.read_text(encoding="utf-8")).get("gender_swaps", {})


def _cased_like(word: str, model: str) -> str:
    if model.isupper() and len(model) > 1:
        return word.upper()
    return word[:1].upper() + word[1:] if model[:1].isupper() else word


def partner_terms(lexicon: Lexicon) -> dict[tuple[str, str, str], str]:
    """(attribute, group, kind) -> the word that names that group in that role: its first
    descriptor, or its first noun."""
    out: dict[tuple[str, str, str], str] = {}
    for key, entries in lexicon.entries.items():
        for e in entries:
            if e.kind not in ("descriptor", "noun") or len(key) != 1:
                continue
            slot = (e.attribute, e.group, e.kind)
            # The word named like its group ("Christians" for christian) wins; else the first listed.
            if slot not in out or (key[0].startswith(e.group) and not out[slot].startswith(e.group)):
                out[slot] = key[0]
    return out


def swap(text: str, mentions: Sequence[Mention], attribute: str, group_to: str, lexicon: Lexicon) -> str | None:
    """`text` with every mention of `attribute` turned to `group_to`; None when a mention has no
    counterpart (a noun of a group that has none, a gendered word WinoBias does not swap)."""
    tokens = list(TOKEN.finditer(text))
    terms = partner_terms(lexicon)
    swaps = gender_swaps()
    edits: list[tuple[int, int, str]] = []
    for m in mentions:
        if m.attribute != attribute or m.kind not in SWAPPED_KINDS or m.group == group_to:
            continue
        first = tokens[m.token]
        last = tokens[m.token + len(TOKEN.findall(m.term)) - 1]
        word = m.term.lower()
        if attribute == "gender":  # the other gender's word, as WinoBias pairs them
            new = _her(tokens, m.token) if word == "her" else swaps.get(word)
        else:
            new = terms.get((attribute, group_to, m.kind))
        if new is None:
            return None
        edits.append((first.start(), last.end(), _cased_like(new, m.term)))
    if not edits:
        return None
    for start, end, new in sorted(edits, reverse=True):
        head = text[:start]
        article = _ARTICLE.search(head)
        if article is not None:
            head = head[: article.start()] + _article(article.group(0), new)
        text = head + new + text[end:]
    return text


_ARTICLE = re.compile(r"\b(?:an?|An?) $")


def _article(article: str, word: str) -> str:
    """ "a" or "an" before `word`, capitalised as written."""
    right = "an " if word[:1].lower() in "aeiou" else "a "
    return right.capitalize() if article[0].isupper() else right


def _her(tokens: list[Any], i: int) -> str:
    following = tokens[i + 1].group(0).lower() if i + 1 < len(tokens) else "."
    return "him" if following in HER_ENDS else "his"


def sample_probes(
    rows: Sequence[Mapping[str, Any]], n: int, seed: int = 0, lexicon: Lexicon | None = None
) -> list[Probe]:
    """`n` pairs from rows whose instruction (and input) names exactly one group of an attribute,
    spread over the attributes, each swapped to the attribute's most mentioned other group that
    has a word for every mention ("kids" has no counterpart among the young, so it goes to the old)."""
    lexicon = lexicon or load_lexicon()
    counts: dict[str, Counter[str]] = {}
    candidates: list[tuple[int, str, str, list[Mention], str]] = []
    for i, row in enumerate(rows):
        text = _prompt(row)
        mentions = lexicon.mentions(text)
        by_attribute: dict[str, set[str]] = {}
        for m in mentions:
            if m.attribute not in ("occupation", "sentiment"):
                by_attribute.setdefault(m.attribute, set()).add(m.group)
        for attribute, groups in by_attribute.items():
            counts.setdefault(attribute, Counter()).update(groups)
            if len(groups) == 1:
                candidates.append((i, attribute, next(iter(groups)), mentions, text))
    rng = random.Random(seed)
    rng.shuffle(candidates)
    probes: list[Probe] = []
    for i, attribute, group, mentions, text in _spread(candidates):
        if len(probes) >= n:
            break
        ranked = [g for g, _ in counts[attribute].most_common()] + lexicon.attributes.get(attribute, [])
        found = _partner(text, mentions, attribute, [g for g in ranked if g != group], lexicon)
        if found is None:
            continue
        partner, swapped = found
        top = ranked[0]
        if group == top:
            probes.append(Probe(i, attribute, group, partner, text, swapped))
        else:
            probes.append(Probe(i, attribute, partner, group, swapped, text))
    return probes


def _partner(
    text: str, mentions: Sequence[Mention], attribute: str, others: list[str], lexicon: Lexicon
) -> tuple[str, str] | None:
    """The first of `others` that `text` can be swapped to, and the swapped text."""
    for other in dict.fromkeys(others):
        swapped = swap(text, mentions, attribute, other, lexicon)
        if swapped is not None and swapped != text:
            return other, swapped
    return None


def _spread(candidates: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Round-robin over the attributes, so a dataset about gender still probes religion."""
    by: dict[str, list[tuple[Any, ...]]] = {}
    for c in candidates:
        by.setdefault(c[1], []).append(c)
    out = []
    while any(by.values()):
        for items in by.values():
            if items:
                out.append(items.pop(0))
    return out


def _prompt(row: Mapping[str, Any]) -> str:
    instruction, given = str(row.get("instruction") or ""), str(row.get("input") or "")
    return f"{instruction}\n\n{given}" if given else instruction


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def wilcoxon_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p over the pairs; None when every pair is tied."""
    diffs = [y - x for x, y in zip(a, b) if y != x]
    if not diffs:
        return None
    from scipy.stats import wilcoxon

    return round(float(wilcoxon(diffs).pvalue), 4)


def mcnemar_p(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Exact McNemar: a two-sided binomial test on the pairs where only one side refused."""
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    if only_a + only_b == 0:
        return None
    from scipy.stats import binomtest

    return round(float(binomtest(only_a, only_a + only_b, 0.5).pvalue), 4)


def compare(probes: Sequence[Probe]) -> list[AttributeGap]:
    """Per attribute, the answered pairs' mean length, refusal rate and judge score on each side,
    and the paired tests."""
    out = []
    for attribute in dict.fromkeys(p.attribute for p in probes):
        done = [p for p in probes if p.attribute == attribute and p.words is not None and p.refused is not None]
        if not done:
            continue
        wa, wb = [p.words[0] for p in done], [p.words[1] for p in done]  # type: ignore[index]
        ra, rb = [p.refused[0] for p in done], [p.refused[1] for p in done]  # type: ignore[index]
        scored = [p for p in done if p.score[0] is not None and p.score[1] is not None]
        sa, sb = [p.score[0] for p in scored], [p.score[1] for p in scored]
        groups = Counter((p.group_a, p.group_b) for p in done).most_common(1)[0][0]
        out.append(
            AttributeGap(
                attribute=attribute,
                pairs=len(done),
                groups=groups,
                words=(_mean(wa) or 0.0, _mean(wb) or 0.0),
                words_p=wilcoxon_p(wa, wb),
                refusal=(sum(ra) / len(done), sum(rb) / len(done)),
                refusal_p=mcnemar_p(ra, rb),
                score=(_mean(sa), _mean(sb)),  # type: ignore[arg-type]
                score_p=wilcoxon_p(sa, sb) if scored else None,  # type: ignore[arg-type]
                scored=len(scored),
            )
        )
    return out
