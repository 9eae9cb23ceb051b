"""Privacy audit at scale: P private records and R rows through the whole audit (verbatim spans,
lexical DCR against a holdout, identifiers, membership attack), each part in its own process for
its peak RSS, against the reference: the decontaminate filter's 8-gram check (a Python dict of
every private 8-gram) on the same data, in the same run.

    .venv/bin/python scripts/bench_privacy.py --private 100000 --rows 100000
    .venv/bin/python scripts/bench_privacy.py --private 10000 --rows 10000 --skip-reference
    .venv/bin/python scripts/bench_privacy.py --private 100000 --rows 10000 --spans-only --skip-reference

Data: English-shaped synthetic text (four in ten words are stop words, the rest drawn from the
bundled MiniLM vocabulary), records of 25 to 60 words; rows whose output is, for 1% each, a private
record verbatim or with small edits (one word in seven replaced or dropped, two swapped), the
rest unrelated text of the same kind; a holdout of P/10 records never copied.
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

STOP = "the a to of and is in for my i please with on at it this that we our you".split()


def _vocab() -> list[str]:
    from filters.embed import default_model_path

    words = (Path(default_model_path()) / "vocab.txt").read_text().split()
    return [w for w in words if w.isalpha() and len(w) >= 4]


def _text(rng: random.Random, vocab: list[str], n: int) -> str:
    out = [rng.choice(STOP) if rng.random() < 0.4 else rng.choice(vocab) for _ in range(n)]
    return " ".join(" ".join(out[i : i + 9]).capitalize() + "." for i in range(0, n, 9))


def _edit(rng: random.Random, text: str, vocab: list[str]) -> str:
    out = []
    for w in text.split():
        r = rng.random()
        if r < 0.09:
            out.append(rng.choice(vocab))
        elif r >= 0.14:
            out.append(w)
    i = rng.randrange(len(out) - 1)
    out[i], out[i + 1] = out[i + 1], out[i]
    return " ".join(out).lower()


def make_data(n_private: int, n_rows: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    vocab = _vocab()
    private = [_text(rng, vocab, rng.randint(25, 60)) for _ in range(n_private)]
    holdout = [_text(rng, vocab, rng.randint(25, 60)) for _ in range(max(100, n_private // 10))]
    rows, kinds = [], []
    for _ in range(n_rows):
        u = rng.random()
        kind = "copy" if u < 0.01 else "edit" if u < 0.02 else "other"
        src = rng.choice(private)
        output = src if kind == "copy" else _edit(rng, src, vocab) if kind == "edit" else _text(rng, vocab, 40)
        rows.append({"instruction": _text(rng, vocab, 12), "input": "", "output": output})
        kinds.append(kind)
    return {"private": private, "holdout": holdout, "rows": rows, "kinds": kinds}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_audit(data: dict) -> dict:
    import numpy as np

    from filters.privacy import PrivateSet, audit

    t = time.perf_counter()
    ps = PrivateSet(data["private"], data["holdout"])
    built = time.perf_counter() - t
    t = time.perf_counter()
    result = audit(data["rows"], [], private_set=ps)
    audited = time.perf_counter() - t
    kinds = np.array(data["kinds"])
    sims = 1.0 - result.dcr
    copies = kinds == "copy"
    over = np.array([w > ps.settings.max_copied_tokens for w in result.span_words])
    return {
        "seconds_index": round(built, 1),
        "seconds_audit": round(audited, 1),
        "span_index_mb": round(ps.spans.nbytes / 1e6, 1),
        "copies": int(copies.sum()),
        "copies_caught": int((over & copies).sum()),
        "edits": int((kinds == "edit").sum()),
        "edits_near": int(((sims >= ps.settings.max_similarity) & (kinds == "edit")).sum()),
        "others": int((kinds == "other").sum()),
        "others_flagged": int((((sims >= ps.settings.max_similarity) | over) & (kinds == "other")).sum()),
        "attack_auc": result.attack_auc,
        "closer_share": result.closer_share,
    }


def run_spans(data: dict) -> dict:
    """The verbatim-span index alone: build, then the longest span of every row's fields (wall and
    CPU seconds: on a shared machine the CPU time is the steadier figure)."""
    from filters.privacy import row_fields
    from filters.spans import SpanIndex

    t, c = time.perf_counter(), time.process_time()
    index = SpanIndex(data["private"])
    built, built_cpu = time.perf_counter() - t, time.process_time() - c
    texts = [t for r in data["rows"] for t in row_fields(r)]
    t, c = time.perf_counter(), time.process_time()
    spans = index.longest_many(texts)
    queried, queried_cpu = time.perf_counter() - t, time.process_time() - c
    return {
        "seconds_index": round(built, 1),
        "seconds_audit": round(queried, 1),
        "cpu_index": round(built_cpu, 1),
        "cpu_query": round(queried_cpu, 1),
        "span_index_mb": round(index.nbytes / 1e6, 1),
        "fields": len(texts),
        "fields_sharing_8_words": sum(s.words >= 8 for s in spans),
    }


def run_reference(data: dict) -> dict:
    from filters.decontam import Decontaminate
    from generator.core.records import Record

    t = time.perf_counter()
    flt = Decontaminate(texts=data["private"], ngram=8, threshold=None)
    built = time.perf_counter() - t
    records = [Record(r["instruction"], r["input"], r["output"]) for r in data["rows"]]
    t = time.perf_counter()
    verdicts = flt.judge(records)
    judged = time.perf_counter() - t
    return {
        "seconds_index": round(built, 1),
        "seconds_audit": round(judged, 1),
        "dropped": sum(not v.keep for v in verdicts),
    }


def child(args: argparse.Namespace) -> None:
    t = time.perf_counter()
    data = make_data(args.private, args.rows)
    made = time.perf_counter() - t
    base = _peak_mb()
    out = {"audit": run_audit, "spans": run_spans, "reference": run_reference}[args.part](data)
    out.update(seconds_data=round(made, 1), peak_mb=round(_peak_mb()), peak_mb_after_data=round(base))
    print(json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--private", type=int, default=100_000)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--part", choices=["audit", "spans", "reference"])
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--spans-only", action="store_true", help="the verbatim-span index alone (and the reference)")
    args = p.parse_args()
    if args.part:
        child(args)
        return
    parts = ["spans" if args.spans_only else "audit"] + ([] if args.skip_reference else ["reference"])
    results = {}
    for part in parts:
        cmd = [sys.executable, __file__, "--private", str(args.private), "--rows", str(args.rows), "--part", part]
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)  # its errors show
        results[part] = json.loads(done.stdout.strip().splitlines()[-1])
        print(part, json.dumps(results[part]), flush=True)
    if "reference" in results:
        a, r = results[parts[0]], results["reference"]
        total_a = a["seconds_index"] + a["seconds_audit"]
        total_r = r["seconds_index"] + r["seconds_audit"]
        print(
            f"audit / reference time: {total_a / max(total_r, 1e-9):.2f}x; peak RSS {a['peak_mb']} vs {r['peak_mb']} MB"
        )


if __name__ == "__main__":
    main()
