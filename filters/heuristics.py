"""Cheap rule-based checks on instructions and outputs.

Instruction checks (`length`, `blocklist`, `instruction_form`) apply as soon as an instruction
exists; instance checks (`instance`, `truncated`) look at the generated input/output and belong in
the chain that runs after responses are generated.
"""

from __future__ import annotations

import re
import unicodedata

from filters.base import KEEP, Filter, Verdict, drop
from generator.core.records import Record
from generator.core.text import echo_key


class LengthFilter(Filter):
    """Instruction word count within bounds."""

    name = "length"

    def __init__(self, min_words: int = 3, max_words: int = 150):
        self.min_words = min_words
        self.max_words = max_words

    def judge(self, records: list[Record]) -> list[Verdict]:
        out = []
        for r in records:
            n = len(r.instruction.split())
            if n < self.min_words:
                out.append(drop("too_short", words=n))
            elif n > self.max_words:
                out.append(drop("too_long", words=n))
            else:
                out.append(KEEP)
        return out


# What a text-only model cannot see or do. Narrower than the self-instruct list (Wang et al. 2023),
# which also blocks "file", "graph", "map", "plot" and "music" and so drops "summarize the plot of
# Hamlet" or "read a CSV file in Python"; pass `words` to use that list.
DEFAULT_BLOCKLIST = (
    "image",
    "images",
    "picture",
    "pictures",
    "photo",
    "photos",
    "photograph",
    "screenshot",
    "draw",
    "drawing",
    "sketch",
    "diagram",
    "flowchart",
    "video",
    "videos",
    "audio",
    "recording",
    "listen to",
    "attached",
    "attachment",
    "upload",
    "download",
    "browse",
    "website",
    "web page",
    "url",
    "go to",
)


class BlocklistFilter(Filter):
    """Drops instructions that ask for something a text model cannot do (see DEFAULT_BLOCKLIST).
    Entries match whole words or phrases, case-insensitively."""

    name = "blocklist"

    def __init__(self, words: list[str] | None = None, extra_words: list[str] | None = None):
        chosen = {
            w.strip().lower()
            for w in list(DEFAULT_BLOCKLIST if words is None else words) + list(extra_words or [])
            if w.strip()
        }
        # Matched against the lowercased text: an IGNORECASE alternation is about 4x slower.
        self.pattern = re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, chosen), key=len, reverse=True)) + r")\b")

    def judge(self, records: list[Record]) -> list[Verdict]:
        search = self.pattern.search
        out = []
        for r in records:
            m = search(r.instruction.lower())
            out.append(drop("blocked_keyword", keyword=m.group(0)) if m else KEEP)
        return out


# A fragment stops on a word that cannot end an English sentence (an article or a conjunction), on
# a connector mark or an ellipsis, or leaves a bracket or quote open. A final ":" is fine: "Sort the
# following list:" introduces its input.
_DANGLING = re.compile(
    r"(?:[,;(\[{&]|\s[-–]|\b(?:a|an|the|and|or|but|because|such as|e\.g\.?|i\.e\.?)|\.\.\.|…)\s*\Z",
    re.IGNORECASE,
)
_HAS_LETTER = re.compile(r"[^\W\d_]")


def _unbalanced(text: str) -> bool:
    return (
        ("(" in text or ")" in text)
        and text.count("(") != text.count(")")
        or ("[" in text or "]" in text)
        and text.count("[") != text.count("]")
        or '"' in text
        and text.count('"') % 2 == 1
    )


class InstructionFormFilter(Filter):
    """Drops instructions that start with punctuation or (optionally) a non-ASCII character, and
    instructions that are only a fragment (no letters, a dangling last word, an open bracket)."""

    name = "instruction_form"

    def __init__(self, ascii_start: bool = True, check_fragments: bool = True):
        self.ascii_start = ascii_start
        self.check_fragments = check_fragments

    def judge(self, records: list[Record]) -> list[Verdict]:
        out = []
        for r in records:
            text = r.instruction.strip()
            if not text or not _HAS_LETTER.search(text):
                out.append(drop("fragment", why="no letters"))
                continue
            first = text[0]
            if unicodedata.category(first).startswith(("P", "S")):
                out.append(drop("starts_with_punctuation", char=first))
            elif self.ascii_start and not first.isascii():
                out.append(drop("starts_non_ascii", char=first))
            elif self.check_fragments and _DANGLING.search(text[-24:]):
                out.append(drop("fragment", why="dangling end"))
            elif self.check_fragments and _unbalanced(text):
                out.append(drop("fragment", why="unbalanced brackets or quotes"))
            else:
                out.append(KEEP)
        return out


class InstanceFilter(Filter):
    """Checks a generated instance: an output exists, differs from the input, and does more than
    restate the instruction (its normalized text is not most of the instruction's; a label taken
    from the instruction, "Positive" for "Classify as positive or negative", is an answer).

    Normalizing (case, punctuation, spacing) only runs when the raw lengths make a match possible:
    normalizing at most halves a text that is not mostly punctuation."""

    name = "instance"

    def __init__(self, min_output_chars: int = 1):
        self.min_output_chars = min_output_chars

    def judge(self, records: list[Record]) -> list[Verdict]:
        out = []
        for r in records:
            output = r.output.strip()
            n = len(output)
            if n < self.min_output_chars:
                out.append(drop("empty_output", chars=n))
                continue
            n_in, n_ins = len(r.input), len(r.instruction)
            if n_in and n <= 2 * n_in and n_in <= 2 * n and echo_key(output) == echo_key(r.input):
                out.append(drop("output_equals_input"))
            elif (
                n <= 2 * n_ins
                and (norm := echo_key(output))
                and (ins := echo_key(r.instruction))
                and 2 * len(norm) >= len(ins)
                and norm in ins
            ):
                out.append(drop("restates_instruction"))
            else:
                out.append(KEEP)
        return out


class TruncatedFilter(Filter):
    """Drops records whose generation stopped at the token limit (`meta["finish_reason"] ==
    "length"`): the output is cut off mid-way."""

    name = "truncated"

    def judge(self, records: list[Record]) -> list[Verdict]:
        return [drop("truncated") if r.meta.get("finish_reason") == "length" else KEEP for r in records]
