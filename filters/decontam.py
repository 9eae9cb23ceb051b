"""Decontamination: drop training records that leak a reference set (benchmark prompts, a previous
dataset, a held-out split), by word n-gram overlap (GPT-3's 13-grams) and by embedding similarity."""

from __future__ import annotations

import hashlib

from filters.base import KEEP, Filter, FilterContext, Verdict, drop
from filters.dedup import VectorIndex
from filters.embed import Embedder, make_embedder
from generator.core import readers
from generator.core.records import Record, user_content
from generator.core.text import dedup_key


def ngrams(text: str, n: int) -> set[int]:
    """Hashes of the word n-grams of the normalized text; the whole text when it is shorter."""
    words = dedup_key(text).split()
    if not words:
        return set()
    spans = [words] if len(words) < n else [words[i : i + n] for i in range(len(words) - n + 1)]
    return {int.from_bytes(hashlib.blake2b(" ".join(s).encode(), digest_size=8).digest(), "big") for s in spans}


def load_reference(spec: str) -> list[str]:
    """Texts of a reference, read by the one reader (generator/core/readers.py): any file, folder or
    Hugging Face dataset it knows (`hf:NAME[:SPLIT]`, split `test` unless named); a .txt file is one
    text a line. A text is the user turn (instruction, then input); a nested task (with `instances`)
    gives one text per instance, so that every input is compared."""
    split = "test" if spec.startswith("hf:") and ":" not in spec[3:] else None
    texts: list[str] = []
    for row in readers.read_rows(spec, split=split, what="reference"):
        record = row.to_record()
        if row.instances is None:
            texts.append(user_content(record.instruction, record.input))
        else:
            texts.extend(user_content(record.instruction, str(i.get("input") or "")) for i in row.instances)
    return texts


class Decontaminate(Filter):
    """Drops a record that shares a word n-gram with a reference text (`ngram_overlap`) or whose
    embedding is within `threshold` cosine of one (`semantic_overlap`).

    The n-grams are taken over the whole record (instruction, input and output), the embedding over
    the user turn. `threshold: null` turns the semantic check off."""

    name = "decontaminate"

    def __init__(
        self,
        references: list[str] | None = None,
        ngram: int = 13,
        threshold: float | None = 0.9,
        encoder: str = "minilm",
        model: str | None = None,
        embedder: Embedder | None = None,
        texts: list[str] | None = None,
    ):
        if not references and not texts:
            raise ValueError(
                "decontaminate needs `references`: files (.txt, .jsonl, .json, .csv, .parquet), dataset "
                "folders or hf:DATASET[:SPLIT] ids; got none"
            )
        self.references = list(references or [])
        self.ngram, self.threshold = ngram, threshold
        self.embedder = embedder or (make_embedder(encoder, model) if threshold is not None else None)
        self.texts = list(texts or [])
        self.grams: set[int] | None = None
        self.index: VectorIndex | None = None

    def setup(self, ctx: FilterContext | None = None) -> None:
        if self.grams is not None:
            return
        texts = self.texts + [t for spec in self.references for t in load_reference(spec)]
        self.texts = texts
        self.grams = set().union(*(ngrams(t, self.ngram) for t in texts)) if texts else set()
        if self.embedder is not None and texts:
            vecs = self.embedder.encode(texts)
            self.index = VectorIndex(vecs.shape[1], exact_until=10**9)
            self.index.add(vecs)

    def judge(self, records: list[Record]) -> list[Verdict]:
        self.setup()
        assert self.grams is not None
        out: list[Verdict | None] = [None] * len(records)
        for i, r in enumerate(records):
            if ngrams(f"{user_content(r.instruction, r.input)} {r.output}", self.ngram) & self.grams:
                out[i] = drop("ngram_overlap", ngram=self.ngram)
        rest = [i for i, v in enumerate(out) if v is None]
        if self.index is not None and self.threshold is not None and rest:
            assert self.embedder is not None
            vecs = self.embedder.encode([user_content(records[i].instruction, records[i].input) for i in rest])
            sims, rows = self.index.nearest(vecs)
            for i, s, row in zip(rest, sims, rows):
                if s >= self.threshold - 1e-6:
                    out[i] = drop(
                        "semantic_overlap", similarity=round(float(s), 4), reference=self.texts[int(row)][:200]
                    )
        return [v if v is not None else KEEP for v in out]
