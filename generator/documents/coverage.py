"""What a documents run took from its corpus: per document its chunks, the chunks the run asked
about, the chunks its kept rows came from and those rows, and the documents nothing came from.
Plain data, written to the run directory as `sources.json` for the report and the card."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from generator.core.records import Record
from generator.documents.chunk import Chunk
from generator.documents.corpus import Corpus


def corpus_coverage(
    corpus: Corpus, chunks: Sequence[Chunk], asked: Iterable[int], records: Iterable[Record]
) -> dict[str, Any]:
    """`asked`: positions in `chunks` the run made requests about; `records`: the kept rows. A
    multi-hop row uses its second chunk too (`meta.source.also`) but counts as a row of its first."""
    rows: Counter[str] = Counter()
    used: set[tuple[str, int]] = set()
    for r in records:
        source = r.meta.get("source") or {}
        if "document" not in source:
            continue
        rows[source["document"]] += 1
        for s in (source, source.get("also") or {}):
            if "document" in s:
                used.add((s["document"], int(s["chunk"])))
    per_doc = Counter(c.document for c in chunks)
    asked_doc = Counter(chunks[i].document for i in set(asked))
    documents = [
        {
            "document": d.path,
            "sha256": d.sha256,
            "chunks": per_doc[n],
            "asked": asked_doc[n],
            "used": sum(1 for path, _ in used if path == d.path),
            "rows": rows[d.path],
        }
        for n, d in enumerate(corpus.documents)
    ]
    total, chunks_used = len(chunks), sum(d["used"] for d in documents)
    return {
        "documents": documents,
        "skipped": [{"document": e.path, "reason": e.reason} for e in corpus.skipped],
        "chunks": total,
        "chunks_used": chunks_used,
        "covered": round(chunks_used / total, 4) if total else 0.0,
        "unused": [d["document"] for d in documents if not d["rows"]],
    }
