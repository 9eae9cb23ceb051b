"""Deduplication: exact on normalized text first, then semantic (embeddings in FAISS)."""

from __future__ import annotations

import re
import unicodedata

from filters.base import KEEP, Filter, Verdict, drop
from generator.records import Record

_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


class ExactDedup(Filter):
    """Keeps the first record of each normalized (instruction, input); stateful across batches."""

    name = "exact_dedup"

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def judge(self, records: list[Record]) -> list[Verdict]:
        out = []
        for r in records:
            key = normalize(r.instruction) + "\x1f" + normalize(r.input)
            if key in self.seen:
                out.append(drop("exact_duplicate", kept_id=self.seen[key]))
            else:
                self.seen[key] = r.id
                out.append(KEEP)
        return out
