"""Documents: instruction data about the user's own material. The documents are read and chunked
when the run opens (generator/documents/), before any server starts; each request shows the model
one chunk (two related chunks for multi-hop) and asks for tasks of one kind with their answers,
written with the passage in view. Backtranslation turns it around: the passage is the answer and
the model writes the instruction it answers.

Every record carries `meta.source`: the document (path as given), its sha256, the chunk's index,
character span, page and section, and the passage (`text`, which the `grounded` filter checks the
answer against). The corpus is in the run's fingerprint by content hash: an edited document is a
changed run, a renamed or moved one is not (request ids depend on the passages, not the names).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from generator.core.errors import ConfigError
from generator.core.records import Record
from generator.core.section import Section
from generator.documents.chunk import Chunk, Sizing, chunk_document, tokenizer_units, word_units
from generator.documents.corpus import Corpus, read_corpus
from generator.documents.coverage import corpus_coverage
from generator.methods.base import Ask, Inputs, Method, Role, requests_per_round, rng_for

TASKS = {
    "factual": "a factual question the passage answers",
    "summary": "a summary of the passage (the passage is the input)",
    "extraction": "extraction of the passage's facts into the given structure (the passage is the input)",
    "reasoning": "a question answered by reasoning over the passage's facts (comparing, applying, inferring)",
    "multi_hop": "a question that needs two related passages from different sections (embedding neighbours)",
    "backtranslation": "the passage is the answer; the model writes the instruction it answers",
}
# Task kinds whose instruction cannot stand without the passage: it is always the record's input.
NEEDS_PASSAGE = ("summary", "extraction")
# Words of a chunk shown to the encoder when multi-hop pairs are made (one MiniLM window).
PAIR_WORDS = 150


class DocumentsConfig(Section):
    paths: list[str] = Field(
        default_factory=list,
        description="Documents to generate from: files (.md, .mdx, .txt, .rst, .html, .pdf, .docx), folders, "
        "globs, or a reader source with a text column (.jsonl, .csv, .parquet, `hf:owner/name`); relative to "
        "the config file.",
    )
    text_column: str = Field("text", description="The column that holds the text in a table source.")
    chunk_size: int = Field(
        384, ge=16, description="Most units per chunk: tokens of the served model's tokenizer (see `chunk_unit`)."
    )
    chunk_overlap: int = Field(32, ge=0, description="Units a chunk cut inside a section repeats of the one before.")
    min_chunk: int = Field(
        24, ge=1, description="A section shorter than this many units is joined to the next one's chunk."
    )
    chunk_unit: Literal["tokens", "words"] = Field(
        "tokens",
        description="`tokens` of the served model's tokenizer (words when it cannot be loaded; the run "
        "says so), or `words`.",
    )
    tasks: dict[str, float] = Field(
        default_factory=lambda: {
            "factual": 0.35,
            "reasoning": 0.2,
            "summary": 0.15,
            "extraction": 0.15,
            "multi_hop": 0.15,
        },
        description="The task mix, kind: weight. Kinds: " + "; ".join(f"`{k}` {v}" for k, v in TASKS.items()) + ".",
    )
    structure: str = Field(
        '{"facts": [{"subject": "...", "fact": "..."}]}',
        description="The structure `extraction` tasks ask the passage's facts to be put in.",
    )
    passage_as_input: bool = Field(
        False,
        description="Give the passage as each record's `input` (instructions that refer to it); false: "
        "instructions stand alone (summary and extraction always carry it).",
    )
    on_bad_file: Literal["error", "skip"] = Field(
        "error",
        description="A document that cannot be read (unknown extension, empty, encrypted or broken PDF, no "
        "text): stop with a one-line error, or `skip` it (counted in the funnel, stage `sources`).",
    )

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown task kind {unknown[0]!r}; valid kinds: {', '.join(TASKS)}")
        if not any(w > 0 for w in value.values()) or any(w < 0 for w in value.values()):
            raise ValueError("weights are 0 or more, and at least one is above 0")
        return value

    @model_validator(mode="after")
    def _overlap_below_size(self) -> DocumentsConfig:
        if self.chunk_overlap * 2 > self.chunk_size:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be at most half of chunk_size")
        return self


_PASSAGE_VARS = frozenset({"passage", "section", "attempt"})


class Documents(Method):
    name = "documents"
    starts_from = "none (documents: the passages of `generation.documents.paths`)"
    summary = (
        "reads your documents (Markdown, text, HTML, PDF, DOCX), cuts them into chunks along headings and "
        "paragraphs, and asks for grounded tasks with their answers per chunk (factual, summary, extraction, "
        "reasoning, multi-hop, backtranslation); every row cites its source in `meta.source`"
    )
    example = "documents.yaml"
    section = "documents"
    config = DocumentsConfig
    roles = {
        "documents": Role(
            "documents",
            "Tasks of one kind about a passage, each with its answer (documents).",
            _PASSAGE_VARS | {"task", "num_tasks", "second_passage", "second_section", "structure", "standalone"},
        ),
        "documents_backtranslation": Role(
            "documents_backtranslation",
            "The instruction a passage answers (documents, backtranslation).",
            _PASSAGE_VARS,
        ),
    }
    default_instances = "response"
    embeds = True  # multi-hop pairs chunks by embedding neighbours
    first_filters = ({"name": "grounded"},)
    lineage = ("source", "task_kind")

    def __init__(self, inputs: Inputs) -> None:
        super().__init__(inputs)
        cfg: DocumentsConfig = inputs.section
        if not cfg.paths:
            raise ConfigError("generation.documents.paths: give the documents to generate from (files, folders, globs)")
        self.corpus: Corpus = read_corpus(
            cfg.paths, inputs.base_dir, skip_bad=cfg.on_bad_file == "skip", text_column=cfg.text_column
        )
        self.unit = cfg.chunk_unit
        units = word_units
        if cfg.chunk_unit == "tokens":
            units, self.unit = self._token_units()
        sizing = Sizing(cfg.chunk_size, cfg.chunk_overlap, cfg.min_chunk)
        self.chunks: list[Chunk] = [
            c for n, doc in enumerate(self.corpus.documents) for c in chunk_document(doc, n, units, sizing)
        ]
        self._partners: list[int | None] | None = None
        self._starts: dict[int, int] = {0: 0}

    def _token_units(self) -> tuple[Any, str]:
        from generator.llm.model import load_tokenizer

        model = self.inputs.model
        try:
            tokenizer = load_tokenizer(model.name, getattr(model, "revision", None))
        except (ConfigError, OSError, ValueError):
            return word_units, "words"
        return tokenizer_units(tokenizer), "tokens"

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return [(err.path, err.reason) for err in self.corpus.skipped]

    def fingerprint(self) -> dict[str, Any]:
        """The corpus by content (and the unit the chunks were sized in): an edited document
        changes the run, a renamed one does not."""
        return {"corpus": [d[:16] for d in self.corpus.digest], "chunk_unit_used": self.unit}

    def describe_change(self, old: dict[str, Any]) -> str:
        """The documents whose content the run in `old` (a stored fingerprint) did not have."""
        before = set(old.get("generation", {}).get(self.section, {}).get("corpus", []))
        new = [d.path for d in self.corpus.documents if d.sha256[:16] not in before]
        return f"new or edited documents: {', '.join(new[:5])}" + (" ..." if len(new) > 5 else "") if new else ""

    # ------------------------------------------------------------------------------------ asks

    def plan(self, start: int, count: int) -> list[tuple[int, str, int]]:
        """(chunk, task kind, attempt) of plan items start..start+count: passes over every chunk in a
        fixed shuffled order, each chunk's kind drawn by the weights; a later pass asks again."""
        out = []
        n = len(self.chunks)
        orders: dict[int, list[int]] = {}
        for position in range(start, start + count):
            attempt, i = divmod(position, n)
            if attempt not in orders:
                orders[attempt] = list(range(n))
                rng_for("documents-order", attempt).shuffle(orders[attempt])
            chunk = orders[attempt][i]
            kinds, weights = zip(*((k, w) for k, w in self.inputs.section.tasks.items() if w > 0))
            kind = rng_for("documents-task", attempt, chunk).choices(kinds, weights)[0]
            out.append((chunk, kind, attempt))
        return out

    def asks(self, pool: Sequence[Record], rnd: int, need: int) -> list[Ask]:
        per = self.inputs.settings.instructions_per_prompt
        count = requests_per_round(self.inputs.settings, need, per)
        start = self._starts.get(rnd, max(self._starts.values()))
        self._starts[rnd + 1] = start + count
        return [self._ask(chunk, kind, attempt, rnd) for chunk, kind, attempt in self.plan(start, count)]

    def _ask(self, index: int, kind: str, attempt: int, rnd: int) -> Ask:
        cfg: DocumentsConfig = self.inputs.section
        chunk = self.chunks[index]
        partner = self.partner(index) if kind == "multi_hop" else None
        if kind == "multi_hop" and partner is None:
            kind = "reasoning"  # a corpus of one section has no pairs
        passage = chunk.text
        source = self.source(chunk)
        if partner is not None:
            other = self.chunks[partner]
            source["also"] = {k: v for k, v in self.source(other).items() if k != "text"}
            source["text"] = f"{chunk.text}\n\n{other.text}"
        meta = {"stage": "instructions", "round": rnd, "source": source, "task_kind": kind}
        base = {"passage": passage, "section": chunk.section, "attempt": attempt}
        if kind == "backtranslation":
            return Ask(self.inputs.templates["documents_backtranslation"], base, meta, record={"output": passage})
        with_input = cfg.passage_as_input or kind in NEEDS_PASSAGE
        variables = {
            **base,
            "task": kind,
            "num_tasks": self.inputs.settings.instructions_per_prompt,
            "second_passage": self.chunks[partner].text if partner is not None else "",
            "second_section": self.chunks[partner].section if partner is not None else "",
            "structure": cfg.structure,
            "standalone": not with_input,
        }
        record = {"input": source["text"]} if with_input else {}
        return Ask(self.inputs.templates["documents"], variables, meta, record=record)

    def source(self, chunk: Chunk) -> dict[str, Any]:
        doc = self.corpus.documents[chunk.document]
        out: dict[str, Any] = {
            "document": doc.path,
            "sha256": doc.sha256,
            "chunk": chunk.index,
            "span": [chunk.start, chunk.end],
            "section": chunk.section,
            "text": chunk.text,
        }
        if chunk.page is not None:
            out["page"] = chunk.page
        return out

    def sources(self, records: Iterable[Record]) -> dict[str, Any]:
        """The corpus's coverage by the kept `records` (`sources.json`: the report's Sources section)."""
        planned = max(self._starts.values())
        asked = range(len(self.chunks)) if planned >= len(self.chunks) else (c for c, _, _ in self.plan(0, planned))
        return corpus_coverage(self.corpus, self.chunks, asked, records)

    # ---------------------------------------------------------------------------- multi-hop pairs

    def partner(self, index: int) -> int | None:
        """The chunk nearest to chunk `index` by embedding (cosine) from another section or document."""
        if self._partners is None:
            self._partners = self._pair()
        return self._partners[index]

    def _pair(self) -> list[int | None]:
        embedder = self.inputs.embedder
        if embedder is None:
            raise ValueError("multi-hop pairs need an embedder (Inputs.embedder)")
        texts = [" ".join(c.text.split()[:PAIR_WORDS]) for c in self.chunks]
        vectors = np.asarray(embedder.encode(texts), dtype=np.float32)
        sims = vectors @ vectors.T
        keys = [(c.document, c.section) for c in self.chunks]
        out: list[int | None] = []
        for i, row in enumerate(sims):
            ranked = [int(j) for j in np.argsort(-row, kind="stable") if keys[int(j)] != keys[i]]
            out.append(ranked[0] if ranked else None)
        return out
