"""Dedup wall time against SemHash on real prompts, side by side in one process with one encoder, and
how often the cascade's verdicts agree with the full path's (every row encoded).

    flock /tmp/heavy.lock .venv/bin/python scripts/bench_dedup_cascade.py \\
        --input ../shared/data/real/t0_prompts_4000.jsonl --json cascade_4000.json

Tools, each timed from the same loaded encoder (model load and the static table's one-time
distillation are not dedup time; both are done before the clock starts):

- `semhash`: SemHash 0.5.0 `self_deduplicate` at its default threshold, with our MiniLM embedder
  (token-sorted batches, so the comparison is of what is encoded, not of how);
- `cascade`: `dedup_records` with the defaults (static first pass, then MiniLM and the pair check);
- `full`: the same with `cascade=None` (every row encoded), unless `--skip-full`; with
  `--full-vectors FILE.npy` (row i's MiniLM vector, made by an earlier run with the same rows) its
  verdicts are computed from those vectors instead, untimed.

Agreement: the share of rows that the cascade and the full path both keep or both drop.

    # the cascade floors: encode counts and agreement, from vectors saved by an earlier run (untimed)
    .venv/bin/python scripts/bench_dedup_cascade.py --input ... --full-vectors v.npy --floors 0.8 0.85 0.9
    # token-sorted batches vs sentence-transformers' own, on every 10th row
    .venv/bin/python scripts/bench_dedup_cascade.py --input ... --sorting 10
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from filters.dedup import ExactDedup, SemanticDedup, dedup_records, record_text  # noqa: E402
from filters.embed import SentenceTransformerEmbedder, StaticEmbedder  # noqa: E402
from generator.core.records import Record  # noqa: E402


class Counted:
    """Our MiniLM embedder, counting the texts and seconds it encodes; `model_path` keeps the cascade on."""

    def __init__(self, inner: SentenceTransformerEmbedder):
        self.inner, self.name, self.version = inner, inner.name, inner.version
        self.model_path = getattr(inner, "model_path", None)
        self.texts, self.seconds = 0, 0.0

    def encode(self, texts, **_: object) -> np.ndarray:
        t = time.perf_counter()
        out = self.inner.encode(list(texts))
        self.seconds += time.perf_counter() - t
        self.texts += len(texts)
        return out


class Table:
    """Vectors given in advance, by text (the full path's verdicts without encoding again)."""

    def __init__(self, texts: list[str], vectors: np.ndarray, name: str, version: str):
        self.vec = dict(zip(texts, vectors))
        self.name, self.version = name, version

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vec[t] for t in texts]).astype(np.float32)


def load(path: Path, limit: int | None) -> list[Record]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [Record(r["instruction"], r.get("input") or "") for r in rows[:limit]]


def run_ours(records: list[Record], emb: Counted, **params) -> tuple[set[str], dict]:
    emb.texts, emb.seconds = 0, 0.0
    t = time.perf_counter()
    result = dedup_records(records, embedder=emb, **params)
    total = time.perf_counter() - t
    sem = result.report.get("semantic", {})
    drops = [
        {"text": record_text(d.record), "kept_text": sem_text, "similarity": round(d.similarity, 4)}
        for d, sem_text in ((d, _kept_text(sem, d.kept_id)) for d in result.dropped if d.reason == "near_duplicate")
    ]
    return {r.id for r in result.kept}, {
        "drops": drops,
        "total_s": round(total, 2),
        "encode_s": round(emb.seconds, 2),
        "encoded": emb.texts,
        "kept": len(result.kept),
        "counts": sem.get("counts", {}),
    }


def _kept_text(sem: dict, kept_id: str) -> str:
    return next((d["kept_text"] for d in sem.get("dropped", []) if d["kept_id"] == kept_id), "")


def run_semhash(records: list[Record], emb: Counted) -> dict:
    from semhash import SemHash

    emb.texts, emb.seconds = 0, 0.0
    texts = [record_text(r) for r in records]
    t = time.perf_counter()
    kept = len(SemHash.from_records(texts, model=emb).self_deduplicate().selected)
    return {
        "total_s": round(time.perf_counter() - t, 2),
        "encode_s": round(emb.seconds, 2),
        "encoded": emb.texts,
        "kept": kept,
    }


def sorting(records: list[Record], inner: SentenceTransformerEmbedder, rounds: int = 2) -> dict:
    """Token-sorted batches against sentence-transformers' own batching on the same texts, interleaved."""
    from filters.embed import normalize_rows

    texts = [record_text(r) for r in records]
    model = inner._load()
    times: dict[str, list[float]] = {"token_sorted": [], "sentence_transformers": []}
    for _ in range(rounds):
        t = time.perf_counter()
        a = inner.encode(texts)
        times["token_sorted"].append(time.perf_counter() - t)
        t = time.perf_counter()
        b = model.encode(texts, batch_size=inner.batch_size, convert_to_numpy=True, normalize_embeddings=True)
        times["sentence_transformers"].append(time.perf_counter() - t)
    best = {k: round(min(v), 2) for k, v in times.items()}
    return {
        "rows": len(texts),
        "best_s": best,
        "speedup": round(best["sentence_transformers"] / best["token_sorted"], 3),
        "max_abs_diff": float(np.abs(a - normalize_rows(b)).max()),
    }


def floors(records: list[Record], vectors: np.ndarray, inner: SentenceTransformerEmbedder, grid: list[float]) -> list:
    """Each cascade floor's encode count and agreement with the full path, all from the same vectors."""
    texts = [record_text(r) for r in records]
    static = StaticEmbedder(inner.model_path, max_pieces=None)
    full = dedup_records(records, embedder=Table(texts, vectors, inner.name, inner.version))
    kept_full = {r.id for r in full.kept}
    out = []
    for floor in grid:
        enc = Counted(Table(texts, vectors, inner.name, inner.version))  # type: ignore[arg-type]
        cheap = Table(texts, static.encode(texts), static.name, static.version)
        sem = SemanticDedup(embedder=enc, cheap=cheap, cascade=floor)
        exact = ExactDedup()
        rows = [r for r, v in zip(records, exact.judge(records)) if v.keep]
        kept = {r.id for r, v in zip(rows, sem.judge(rows)) if v.keep}
        agree = sum((r.id in kept) == (r.id in kept_full) for r in records) / len(records)
        out.append({"floor": floor, "encoded": enc.texts, "kept": len(kept), "agreement": round(agree, 4)})
        print(out[-1], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, required=True, help="JSONL with instruction (and input)")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--skip-full", action="store_true", help="no full path (agreement from --full-vectors)")
    ap.add_argument("--full-vectors", type=Path, help="row i's MiniLM vector (.npy), for the full path's verdicts")
    ap.add_argument("--no-semhash", action="store_true")
    ap.add_argument("--sorting", type=int, metavar="EVERY", help="only compare batchings, on every EVERY-th row")
    ap.add_argument(
        "--floors", type=float, nargs="+", help="only the cascade floors' agreement, from --full-vectors (untimed)"
    )
    ap.add_argument("--cascade", type=float, help="the cascade's static cosine floor (default: the spec's)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--drops", type=Path, help="write the cascade's semantic drops (JSONL), for labeling")
    args = ap.parse_args()
    records = load(args.input, args.limit)
    inner = SentenceTransformerEmbedder()
    inner.encode(["warm up"])  # model load
    StaticEmbedder(inner.model_path, max_pieces=None).encode(["warm up"])  # the table, distilled once
    if args.sorting:
        print(json.dumps(sorting(records[:: args.sorting], inner)))
        return
    if args.floors:
        if args.full_vectors is None:
            raise SystemExit("--floors needs --full-vectors")
        print(json.dumps(floors(records, np.load(args.full_vectors)[: len(records)], inner, args.floors)))
        return
    emb = Counted(inner)
    out: dict[str, object] = {"rows": len(records), "input": str(args.input)}
    kept_cascade, out["cascade"] = run_ours(records, emb, **({"cascade": args.cascade} if args.cascade else {}))
    drops = out["cascade"].pop("drops")  # type: ignore[union-attr]
    if args.drops:
        args.drops.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in drops))
    print("cascade", out["cascade"], flush=True)
    if not args.no_semhash:
        out["semhash"] = run_semhash(records, emb)
        print("semhash", out["semhash"], flush=True)
    kept_full = None
    if args.full_vectors is not None:
        vectors = np.load(args.full_vectors)
        table = Table([record_text(r) for r in records], vectors[: len(records)], inner.name, inner.version)
        result = dedup_records(records, embedder=table)
        kept_full = {r.id for r in result.kept}
        out["full_from_vectors"] = {"kept": len(result.kept)}
    elif not args.skip_full:
        kept_full, out["full"] = run_ours(records, emb, cascade=None)
        out["full"].pop("drops")  # type: ignore[union-attr]
        print("full", out["full"], flush=True)
    if kept_full is not None:
        ids = [r.id for r in records]
        same = sum((i in kept_full) == (i in kept_cascade) for i in ids)
        out["agreement"] = round(same / len(ids), 4)
        out["differ"] = len(ids) - same
    if "semhash" in out:
        out["semhash_over_cascade"] = round(out["semhash"]["total_s"] / out["cascade"]["total_s"], 2)  # type: ignore[index]
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
