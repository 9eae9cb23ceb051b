"""Decontamination recall and false positives on planted benchmark items.

The benchmark (tests/data/decontam/: 8 nested Self-Instruct tasks, 4 with long inputs; 8 flat Alpaca
items in a JSON array; 6 chat rows) is planted among ordinary records (tests/data/dataset_records.jsonl,
every instruction, paraphrase and negative of the labeled paraphrase sets, the built-in seed tasks),
each item once verbatim and once reworded (tests/data/decontam/planted.jsonl). The ordinary records are
not benchmark items: every one of them dropped is a false positive.

    PYTHONPATH=. python scripts/eval_decontam.py [--encoder minilm|static] [--threshold 0.9] [--ngram-only]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "tests" / "data"
BENCH = DATA / "decontam"
REFERENCES = [BENCH / "benchmark_nested.jsonl", BENCH / "benchmark_flat.json", BENCH / "benchmark_chat.jsonl"]


def ordinary() -> list[dict[str, str]]:
    """Records that are not benchmark items, deduplicated by instruction and input."""
    rows: list[dict[str, str]] = []
    for line in (DATA / "dataset_records.jsonl").read_text(encoding="utf-8").split("\n"):
        if line.strip():
            r = json.loads(line)
            rows.append({"instruction": r["instruction"], "input": r.get("input", ""), "output": r.get("output", "")})
    for name in ("paraphrase_groups.jsonl", "paraphrase_groups_train.jsonl", "paraphrase_groups_heldout.jsonl"):
        for line in (DATA / name).read_text(encoding="utf-8").split("\n"):
            if line.strip():
                g = json.loads(line)
                for text in [g["instruction"], *g.get("paraphrases", []), *g.get("negatives", [])]:
                    rows.append({"instruction": text, "input": "", "output": ""})
    for seeds in sorted((ROOT / "prompts" / "seeds").glob("*.jsonl")):
        for line in seeds.read_text(encoding="utf-8").split("\n"):
            if line.strip():
                s = json.loads(line)
                inst = (s.get("instances") or [{}])[0]
                rows.append(
                    {"instruction": s["instruction"], "input": inst.get("input", ""), "output": inst.get("output", "")}
                )
    seen, out = set(), []
    for r in rows:
        key = (r["instruction"], r["input"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", choices=["minilm", "static"], default="minilm")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--ngram", type=int, default=13)
    parser.add_argument("--ngram-only", action="store_true")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    from generator.run.clean import decontaminate

    planted = [json.loads(line) for line in (BENCH / "planted.jsonl").read_text(encoding="utf-8").split("\n") if line]
    normal = ordinary()
    rows = []
    for i, r in enumerate(normal):  # plant one benchmark row after every few ordinary ones
        rows.append({**r, "meta": {"kind": "ordinary"}})
        if i % 8 == 0 and planted:
            p = planted.pop(0)
            rows.append({k: p[k] for k in ("instruction", "input", "output")} | {"meta": {"kind": p["kind"]}})
    rows += [{k: p[k] for k in ("instruction", "input", "output")} | {"meta": {"kind": p["kind"]}} for p in planted]

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        start = time.perf_counter()
        decontaminate(
            [data],
            [str(p) for p in REFERENCES],
            Path(tmp) / "out",
            ngram=args.ngram,
            threshold=None if args.ngram_only else args.threshold,
            encoder=args.encoder,
        )
        elapsed = time.perf_counter() - start
        report = json.loads((Path(tmp) / "out" / "decontamination.json").read_text(encoding="utf-8"))
    caught = {m["id"]: m for b in report["benchmarks"].values() for m in b["matches"]}

    from generator.core.records import record_id

    figures: dict[str, object] = {"encoder": None if args.ngram_only else args.encoder, "threshold": args.threshold}
    for kind in ("verbatim", "reworded", "ordinary"):
        group = [r for r in rows if r["meta"]["kind"] == kind]
        hit = [r for r in group if record_id(r["instruction"], r["input"]) in caught]
        by = {"ngram_overlap": 0, "semantic_overlap": 0}
        for r in hit:
            by[caught[record_id(r["instruction"], r["input"])]["reason"]] += 1
        figures[kind] = {"rows": len(group), "caught": len(hit), **by}
        missed = [r["instruction"][:70] for r in group if r not in hit] if kind != "ordinary" else []
        label = "false positives" if kind == "ordinary" else "recall"
        print(
            f"{kind:9} {label}: {len(hit)}/{len(group)} "
            f"(n-gram {by['ngram_overlap']}, similarity {by['semantic_overlap']})"
        )
        for text in missed:
            print(f"    missed: {text}")
        if kind == "ordinary":
            for r in hit:
                m = caught[record_id(r["instruction"], r["input"])]
                print(f"    false positive ({m['score']}): {r['instruction'][:60]!r} ~ {m['reference'][:60]!r}")
    print(f"{len(rows)} rows in {elapsed:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
