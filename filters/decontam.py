"""Decontamination: drop training records that leak a reference set (benchmark prompts, a previous
dataset, a held-out split), by word n-gram overlap (GPT-3's 13-grams) and by embedding similarity.

Three checks, cheapest first, each reported per reference (benchmark) with the matched text:

- the normalized user turn (instruction, then input) equals a reference's: catches references of
  any length, however short;
- a word n-gram of the record (instruction, input and output) is one of a reference's: `ngram`
  words, or the whole reference when it has fewer words but at least `SHORT_NGRAM` (a 9-word
  benchmark question copied into a longer record is caught; a 3-word one would match too much);
- embedding similarity, instruction to instruction and input to input (both must be close), or
  user turn to user turn: a long input neither hides a copied instruction nor makes two different
  passages under one generic instruction ("Summarize the article.") look alike.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from filters.base import KEEP, Filter, FilterContext, Verdict, drop
from filters.dedup import VectorIndex
from filters.embed import Embedder, make_embedder
from generator.core import readers
from generator.core.errors import ConfigError
from generator.core.files import atomic_open
from generator.core.paths import cache_dir
from generator.core.records import Record, user_content
from generator.core.text import dedup_key

SHORT_NGRAM = 8
"""The fewest words of a reference shorter than `ngram` that is still matched inside a longer record."""
CANDIDATES = 8  # nearest references per index whose instruction/input pair is scored
CLIP = 1000  # characters of a matched text kept in the report


def _hash(words: list[str]) -> int:
    return int.from_bytes(hashlib.blake2b(" ".join(words).encode(), digest_size=8).digest(), "big")


def ngrams(text: str, n: int) -> set[int]:
    """Hashes of the word n-grams of the normalized text; the whole text when it is shorter."""
    words = dedup_key(text).split()
    if not words:
        return set()
    spans = [words] if len(words) < n else [words[i : i + n] for i in range(len(words) - n + 1)]
    return {_hash(s) for s in spans}


@dataclass(frozen=True)
class Reference:
    """One reference text: a benchmark item (one per instance of a nested task)."""

    source: str  # the reference as named in the config or on the command line: the benchmark
    instruction: str
    input: str = ""

    @property
    def text(self) -> str:
        return user_content(self.instruction, self.input)


def read_reference(spec: str, *, base_dir: str | Path | None = None) -> list[Reference]:
    """A reference's items, read by the one reader (generator/core/readers.py): any file, folder or
    Hugging Face dataset it knows (`hf:NAME[:SPLIT]`, split `test` unless named); a .txt file is one
    text a line. A nested task (with `instances`) gives one item per instance, so that every input is
    compared; a chat row or a question file's row (MT-Bench, Arena-Hard `turns`) one item per user
    turn. A Hub reference is read once and cached in the user cache
    (so a later run works offline)."""
    hub = spec.startswith("hf:")
    cached = cache_dir() / "references" / f"{hashlib.sha256(spec.encode()).hexdigest()[:20]}.jsonl"
    if hub and cached.is_file():
        rows = [json.loads(line) for line in cached.read_text(encoding="utf-8").split("\n") if line]
        return [Reference(spec, r["instruction"], r["input"]) for r in rows]
    split = "test" if hub and ":" not in spec[3:] else None
    items: list[Reference] = []
    for row in readers.read_rows(spec, split=split, base_dir=base_dir, what="reference"):
        record = row.to_record()
        if row.instances is None:
            items.append(Reference(spec, record.instruction, record.input))
            # every later user turn too: MT-Bench's second questions are benchmark items as well
            items.extend(Reference(spec, m["content"]) for m in record.turns if m["role"] == "user" and m["content"])
        else:
            items.extend(Reference(spec, record.instruction, str(i.get("input") or "")) for i in row.instances)
    if hub:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(cached, "w") as f:
            for r in items:
                f.write(json.dumps({"instruction": r.instruction, "input": r.input}, ensure_ascii=False) + "\n")
    return items


def load_reference(spec: str, *, base_dir: str | Path | None = None) -> list[str]:
    """The texts of a reference (user turns: instruction, then input); see `read_reference`."""
    return [r.text for r in read_reference(spec, base_dir=base_dir)]


def _clip(text: str) -> str:
    return text if len(text) <= CLIP else text[:CLIP] + " …"


class Decontaminate(Filter):
    """Drops a record that matches a reference text: its normalized user turn, or a word n-gram
    (`ngram_overlap`), or its embedding within `threshold` cosine (`semantic_overlap`); see the module
    docstring. `threshold: null` turns the semantic check off.

    References are read when the filter is built (from a config: relative to the config file's folder,
    `base_dir`), so that a missing one stops a run before anything starts; `where` names the filter's
    key in errors. Every match is kept for `report()`, written to the run's state on `close()`."""

    name = "decontaminate"

    def __init__(  # noqa: PLR0913 - one keyword per spec parameter, plus what the caller provides
        self,
        references: list[str] | None = None,
        ngram: int = 13,
        threshold: float | None = 0.9,
        encoder: str = "minilm",
        model: str | None = None,
        embedder: Embedder | None = None,
        texts: list[str] | None = None,
        base_dir: str | Path | None = None,
        where: str = "decontaminate",
    ):
        if not references and not texts:
            raise ValueError(
                "decontaminate needs `references`: files (.txt, .jsonl, .json, .csv, .parquet), dataset "
                "folders or hf:DATASET[:SPLIT] ids; got none"
            )
        self.references = list(references or [])
        self.ngram, self.threshold = ngram, threshold
        self.embedder = embedder or (make_embedder(encoder, model) if threshold is not None else None)
        self.refs = [Reference("texts", t) for t in texts or []]
        for i, spec in enumerate(self.references):
            try:
                self.refs += read_reference(spec, base_dir=base_dir)
            except ConfigError as err:
                raise ConfigError(f"{where}.references[{i}]: {err}") from None
        self.texts = [r.text for r in self.refs]
        self._index_text()
        self.matches: dict[str, dict[str, Any]] = {}  # record id -> its match, in the order found
        self.state_dir: Path | None = None
        self.vectors: dict[str, np.ndarray] | None = None
        self.indexes: dict[str, VectorIndex] = {}

    # -- text checks --------------------------------------------------------------------------------

    def _index_text(self) -> None:
        self.exact: dict[str, int] = {}
        self.grams: dict[int, dict[int, int]] = {}  # length -> gram hash -> reference
        self.gram_count: list[int] = []
        for j, ref in enumerate(self.refs):
            key = dedup_key(ref.text)
            self.exact.setdefault(key, j)
            words = key.split()
            n = self.ngram if len(words) >= self.ngram else len(words) if len(words) >= SHORT_NGRAM else 0
            spans = [words[i : i + n] for i in range(len(words) - n + 1)] if n else []
            for s in spans:
                self.grams.setdefault(n, {}).setdefault(_hash(s), j)
            self.gram_count.append(len(spans))

    def _text_match(self, r: Record) -> tuple[int, float] | None:
        """The reference a record copies, and the share of that reference's n-grams it holds."""
        j = self.exact.get(dedup_key(user_content(r.instruction, r.input)))
        if j is not None:
            return j, 1.0
        words = dedup_key(f"{user_content(r.instruction, r.input)} {r.output}").split()
        hits: Counter[int] = Counter()
        for n, table in self.grams.items():
            seen = {_hash(words[i : i + n]) for i in range(len(words) - n + 1)}
            hits.update(table[h] for h in seen if h in table)
        if not hits:
            return None
        j, count = max(hits.items(), key=lambda kv: (kv[1] / max(1, self.gram_count[kv[0]]), -kv[0]))
        return j, min(1.0, count / max(1, self.gram_count[j]))

    # -- similarity -----------------------------------------------------------------------------------

    def setup(self, ctx: FilterContext | None = None) -> None:
        if ctx is not None and ctx.state_dir is not None:
            self.state_dir = Path(ctx.state_dir) / self.name
        if self.vectors is not None or self.threshold is None or not self.refs:
            return
        assert self.embedder is not None  # built with the threshold
        has_input = [j for j, r in enumerate(self.refs) if r.input]
        self.vectors = {
            "text": self.embedder.encode(self.texts),
            "instruction": self.embedder.encode([r.instruction for r in self.refs]),
            "input": np.zeros((len(self.refs), 0), np.float32),
        }
        dim = self.vectors["text"].shape[1]
        inputs = np.zeros((len(self.refs), dim), np.float32)
        if has_input:
            inputs[has_input] = self.embedder.encode([self.refs[j].input for j in has_input])
        self.vectors["input"] = inputs
        self.indexes = {}
        for key in ("text", "instruction"):
            self.indexes[key] = VectorIndex(dim, exact_until=10**9)
            self.indexes[key].add(self.vectors[key])

    def _similar(self, records: list[Record]) -> list[tuple[int, float]]:
        """Each record's most similar reference and the similarity: the best of user turn to user
        turn, and of instruction to instruction with input to input (the lower of the two) where both
        have an input or neither has."""
        assert self.embedder is not None and self.vectors is not None
        text = self.embedder.encode([user_content(r.instruction, r.input) for r in records])
        instr = self.embedder.encode([r.instruction for r in records])
        with_input = [i for i, r in enumerate(records) if r.input]
        inputs = np.zeros_like(text)
        if with_input:
            inputs[with_input] = self.embedder.encode([records[i].input for i in with_input])
        k = min(CANDIDATES, len(self.refs))
        _, rows_t = self.indexes["text"].search(text, k)
        _, rows_i = self.indexes["instruction"].search(instr, k)
        out = []
        for i, r in enumerate(records):
            best, best_j = -1.0, -1
            for j in {int(j) for j in (*rows_t[i], *rows_i[i]) if j >= 0}:
                ref = self.refs[j]
                score = float(text[i] @ self.vectors["text"][j])
                if bool(r.input) == bool(ref.input):
                    pair = float(instr[i] @ self.vectors["instruction"][j])
                    if r.input:
                        pair = min(pair, float(inputs[i] @ self.vectors["input"][j]))
                    score = max(score, pair)
                if score > best:
                    best, best_j = score, j
            out.append((best_j, best))
        return out

    # -- judging ----------------------------------------------------------------------------------------

    def judge(self, records: list[Record]) -> list[Verdict]:
        out: list[Verdict | None] = [None] * len(records)
        for i, r in enumerate(records):
            hit = self._text_match(r)
            if hit is not None:
                out[i] = drop("ngram_overlap", ngram=self.ngram, **self._match(r, "ngram_overlap", *hit))
        rest = [i for i, v in enumerate(out) if v is None]
        if self.threshold is not None and rest and self.refs:
            self.setup()
            for i, (j, s) in zip(rest, self._similar([records[i] for i in rest])):
                if j >= 0 and s >= self.threshold - 1e-6:
                    detail = self._match(records[i], "semantic_overlap", j, s)
                    out[i] = drop("semantic_overlap", similarity=round(s, 4), **detail)
                elif j >= 0:  # kept: how close it came to the benchmark
                    out[i] = Verdict(keep=True, scores={"benchmark_similarity": round(s, 4)})
        return [v if v is not None else KEEP for v in out]

    def _match(self, r: Record, reason: str, j: int, score: float) -> dict[str, Any]:
        """Records the match for the report; the verdict's detail."""
        ref = self.refs[j]
        self.matches.setdefault(
            r.id,
            {
                "id": r.id,
                "instruction": _clip(r.instruction),
                "input": _clip(r.input),
                "reason": reason,
                "score": round(score, 4),
                "benchmark": ref.source,
                "reference": _clip(ref.text),
            },
        )
        return {"benchmark": ref.source, "reference": ref.text[:200]}

    # -- report -------------------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """Per benchmark (reference source): its items, the rows caught by n-gram and by similarity,
        and each match with the reference text it matched and the score (the share of the
        reference's n-grams for `ngram_overlap`, the cosine for `semantic_overlap`)."""
        sizes = Counter(r.source for r in self.refs)
        benchmarks: dict[str, Any] = {
            s: {"references": n, "ngram_overlap": 0, "semantic_overlap": 0, "matches": []} for s, n in sizes.items()
        }
        for m in self.matches.values():
            b = benchmarks[m["benchmark"]]
            b[m["reason"]] += 1
            b["matches"].append(m)
        return {
            "ngram": self.ngram,
            "short_ngram": SHORT_NGRAM,
            "threshold": self.threshold,
            "encoder": self.embedder.name if self.embedder is not None else None,
            "caught": len(self.matches),
            "benchmarks": benchmarks,
        }

    def counts(self) -> dict[str, dict[str, int]]:
        """The report's counts per benchmark, for the dataset card."""
        return {
            s: {k: b[k] for k in ("references", "ngram_overlap", "semantic_overlap")}
            for s, b in self.report()["benchmarks"].items()
        }

    def close(self) -> None:
        if self.state_dir is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.state_dir / "report.json", "w") as f:
            json.dump(self.report(), f, ensure_ascii=False, indent=2)
