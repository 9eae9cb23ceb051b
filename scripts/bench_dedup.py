"""Dedup speed: N synthetic instructions through exact + semantic dedup, encoder and index timed
separately, peak RSS per size (each size runs in its own process), and SemHash on the same rows
with the same encoder.

    .venv/bin/python scripts/bench_dedup.py --sizes 10000 100000 --encoder static --semhash
    .venv/bin/python scripts/bench_dedup.py --sizes 10000 --encoder minilm [--no-pair-check]

Rows: sentences from the labeled set with one word swapped for a random vocabulary word (distinct
tasks), plus 10% re-worded copies (case, punctuation, a polite prefix) and 5% exact copies.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_rows(n: int, seed: int = 0) -> list[str]:
    from filters.embed import default_model_path

    rng = random.Random(seed)
    groups = [json.loads(line) for line in (ROOT / "tests/data/paraphrase_groups.jsonl").read_text().splitlines()]
    base = [t for g in groups for t in (g["instruction"], *g["paraphrases"], *g["negatives"])]
    vocab = [w for w in (Path(default_model_path()) / "vocab.txt").read_text().split() if w.isalpha() and len(w) >= 4]
    rows: list[str] = []
    while len(rows) < n:
        u = rng.random()
        if rows and u < 0.05:
            rows.append(rng.choice(rows))
        elif rows and u < 0.15:
            rows.append("Please " + rng.choice(rows).lower().rstrip(".") + "!")
        else:
            words = rng.choice(base).split()
            for _ in range(2):
                words[rng.randrange(len(words))] = rng.choice(vocab)
            rows.append(" ".join(words))
    return rows


class Timed:
    """Wraps an embedder and adds up the seconds spent encoding."""

    def __init__(self, inner):
        self.inner, self.name, self.seconds = inner, inner.name, 0.0

    def encode(self, texts, **_: object):
        t = time.perf_counter()
        out = self.inner.encode(list(texts))
        self.seconds += time.perf_counter() - t
        return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(n: int, encoder: str, tool: str, exact_until: int, pair_check: bool | None) -> dict[str, object]:
    from filters.dedup import dedup_records
    from filters.embed import make_embedder
    from generator.core.records import Record

    rows = make_rows(n)
    emb = make_embedder(encoder)
    emb.encode(["warm up"])  # model load and distillation are not dedup time
    timed = Timed(emb)
    t0 = time.perf_counter()
    if tool == "ours":
        result = dedup_records(
            [Record(r) for r in rows], embedder=timed, exact_until=exact_until, pair_check=pair_check
        )
        sem = result.report["semantic"]
        kept, index = len(result.kept), sem["index"] + (" +pair" if sem["pair_check"] else "")
    else:
        from semhash import SemHash

        kept = len(SemHash.from_records(rows, model=timed).self_deduplicate(threshold=0.84).selected)
        index = "usearch"
    total = time.perf_counter() - t0
    return {
        "tool": tool,
        "n": n,
        "encoder": timed.name,
        "index": index,
        "kept": kept,
        "total_s": round(total, 2),
        "encode_s": round(timed.seconds, 2),
        "index_s": round(total - timed.seconds, 2),
        "rows_per_s": round(n / total),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="dedup benchmark")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--encoder", choices=["minilm", "static"], default="static")
    ap.add_argument("--semhash", action="store_true", help="also run SemHash on the largest size")
    ap.add_argument("--exact-until", type=int, default=50_000)
    ap.add_argument(
        "--no-pair-check",
        action="store_true",
        help="plain cosine 0.84 (the pair check is on by default where fitted: MiniLM)",
    )
    ap.add_argument("--one", nargs=2, metavar=("N", "TOOL"), help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.one:
        print(
            json.dumps(
                run_one(
                    int(args.one[0]), args.encoder, args.one[1], args.exact_until, False if args.no_pair_check else None
                )
            )
        )
        return
    jobs = [(n, "ours") for n in args.sizes] + ([(max(args.sizes), "semhash")] if args.semhash else [])
    results = []
    for n, tool in jobs:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                str(n),
                tool,
                "--encoder",
                args.encoder,
                "--exact-until",
                str(args.exact_until),
            ]
            + (["--no-pair-check"] if args.no_pair_check else []),
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise SystemExit(f"{tool} at {n} failed:\n{out.stderr[-2000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        print(
            f"{r['tool']:<8} n={r['n']:>8}  {r['encoder']:<18} {r['index']:<8} total {r['total_s']:>7.1f} s  "
            f"encode {r['encode_s']:>7.1f} s  index {r['index_s']:>7.1f} s  {r['rows_per_s']:>7}/s  "
            f"kept {r['kept']:>8}  peak RSS {r['peak_rss_mb']} MB",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
