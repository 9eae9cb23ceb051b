"""Grounded answers: a row made from a document passage (`meta.source.text`, the documents method)
must say what the passage says. A fast lexical check: the share of the answer's content words
(words that are no stop words, numbers, names) found in the passage, exactly or by a shared stem;
a number the passage does not hold is never supported. An answer that copies a long run of the
passage word for word teaches copying, not answering: the longest run it may copy is set per task
kind (extraction copies values; backtranslation's answer is the passage itself).

Rows without a passage are kept: the filter judges only what it can check."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from filters.base import KEEP, Filter, Verdict, drop
from generator.core.records import Record

_TOKEN = re.compile(r"[^\W_]+(?:[.,'’-][^\W_]+)*", re.UNICODE)
_NUMBER = re.compile(r"^\d[\d.,]*$")
# Function words and the words any answer uses; they say nothing about support.
STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each either else etc even ever
    every few for from further had has have having he her here hers him his how however i if in into is
    it its itself just least less let like made make many may me might more most much must my neither no
    nor not now of off often on once one only or other our ours out over own per rather same shall she
    should since so some such than that the their theirs them then there these they this those through
    thus to too under until up upon us use used uses using very via was we were what when where whether
    which while who whom whose why will with within without would yes yet you your yours answer passage
    text document section question following based according given example means mean called""".split()
)
# Most consecutive words an answer may copy, by task kind (None: no limit).
MAX_COPY: dict[str, int | None] = {"default": 24, "extraction": 60, "backtranslation": None}
STEM = 5  # words of more than STEM letters match by their first STEM letters (applies/applied, caches/cached)
# Inflections left off before that, where at least 4 letters stay (lasted/lasting, most/mostly).
SUFFIXES = ("ingly", "edly", "ing", "ed", "ly", "es", "s")


# Numbers in words are numbers ("twelve items" holds 12); "one" is left a word (one of, no one).
_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"
).split()
_TENS = {"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90"}
NUMBER_WORDS = {w: str(n) for n, w in enumerate(_UNITS) if w != "one"} | _TENS


def words(text: str) -> list[str]:
    """Lowercased words, a possessive's "'s" left off (Arrow's is Arrow), numbers in words as digits."""
    out = [m.group().lower().replace("’", "'") for m in _TOKEN.finditer(text)]
    return [NUMBER_WORDS.get(w, w[:-2] if w.endswith("'s") else w) for w in out]


def _stem(word: str) -> str:
    if not word.isalpha():
        return word
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            break
    return word[:STEM] if len(word) > STEM else word


def answer_text(answer: str) -> str:
    """The words an answer states: a JSON answer's values only (its keys name the structure that
    was asked for, such as `documents.structure`'s, not facts of the passage)."""
    if answer.lstrip()[:1] not in ("{", "["):
        return answer
    try:
        data = json.loads(answer)
    except ValueError:
        return answer
    values: list[str] = []
    _values(data, values)
    return "\n".join(values)


def _values(item: Any, out: list[str]) -> None:
    if isinstance(item, dict):
        item = list(item.values())
    if isinstance(item, list):
        for value in item:
            _values(value, out)
    elif item is not None and not isinstance(item, bool):
        out.append(str(item))


def content_words(tokens: list[str]) -> list[str]:
    return [t for t in tokens if t not in STOP_WORDS and (len(t) > 2 or t.isdigit())]


def support(answer: str, passage: str) -> tuple[float, list[str], list[str]]:
    """(share of the answer's content words found in the passage, those missing, numbers missing)."""
    found = words(passage)
    exact = set(found)
    stems = {_stem(w) for w in found}
    content = content_words(words(answer))
    if not content:
        return 1.0, [], []
    missing = [w for w in content if w not in exact and _stem(w) not in stems]
    numbers = [w for w in missing if _NUMBER.match(w)]
    return 1 - len(missing) / len(content), missing, numbers


def longest_copy(answer: str, passage: str, limit: int) -> int:
    """The longest run of words the answer shares with the passage, counted up to `limit` + 1."""
    a, p = words(answer), words(passage)
    best = 0
    for n in range(1, limit + 2):
        grams = {tuple(p[i : i + n]) for i in range(len(p) - n + 1)}
        if not any(tuple(a[i : i + n]) in grams for i in range(len(a) - n + 1)):
            break
        best = n
    return best


class GroundedFilter(Filter):
    """Drops answers whose content words the passage does not support (`unsupported`) and answers
    that copy more than `max_copy[kind]` consecutive words of it (`copies_source`)."""

    name = "grounded"

    def __init__(self, min_support: float = 0.75, max_copy: dict[str, int | None] | None = None) -> None:
        self.min_support = min_support
        self.max_copy = {**MAX_COPY, **(max_copy or {})}

    def judge(self, records: list[Record]) -> list[Verdict]:
        return [self.judge_one(r) for r in records]

    def judge_one(self, record: Record) -> Verdict:
        source: Any = record.meta.get("source")
        passage = source.get("text") if isinstance(source, dict) else None
        if not passage or not record.output:
            return KEEP
        kind = str(record.meta.get("task_kind", ""))
        limit = self.max_copy.get(kind, self.max_copy["default"])
        if limit is not None:
            run = longest_copy(record.output, passage, limit)
            if run > limit:
                return drop("copies_source", run=run, limit=limit)
        score, missing, numbers = support(answer_text(record.output), passage)
        scores = {"grounded_support": round(score, 3)}
        if numbers or score < self.min_support:
            return replace(drop("unsupported", missing=missing[:10], numbers=numbers[:5]), scores=scores)
        return Verdict(True, scores=scores)
