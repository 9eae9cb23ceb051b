"""Records per second of the rule-based filter chain (no judge) on synthetic records.

    .venv/bin/python scripts/bench_filters.py                  # 100k records, language measured apart
    .venv/bin/python scripts/bench_filters.py --records 20000 --language-records 2000 --json out.json

Rates are per CPU second of this process (and per wall second, with the load average): on a
machine shared with a vLLM server the wall rate mostly measures waiting for a core. The language
detector is timed on its own, on fewer records of real English sentences: it is more than ten
times slower than the rest of the chain together. Target for the chain: >= 20,000 records/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from itertools import accumulate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from filters.base import Chain  # noqa: E402
from filters.registry import build_chain  # noqa: E402
from filters.specs import parse_specs  # noqa: E402
from generator.core.records import Record  # noqa: E402

CHAIN = [
    {"name": "truncated"},
    {"name": "length"},
    {"name": "blocklist"},
    {"name": "instruction_form"},
    {"name": "instance"},
    {"name": "repetition"},
    {"name": "refusal"},
    {"name": "pii"},
]

VERBS = [
    "Write",
    "Explain",
    "Describe",
    "List",
    "Summarize",
    "Classify",
    "Translate",
    "Compare",
    "Give",
    "Suggest",
    "Create",
    "Rewrite",
    "Identify",
    "Find",
    "Convert",
]
# English-like word statistics without a corpus: the commonest words with their approximate share of
# running text, then a Zipf-distributed tail of made-up words. Repetition rules react to word
# statistics, so a uniform draw from a small vocabulary would make them look slower than they are.
HEAD = {
    "the": 6.0,
    "of": 3.0,
    "and": 2.8,
    "to": 2.6,
    "a": 2.2,
    "in": 1.9,
    "is": 1.1,
    "that": 1.0,
    "for": 0.9,
    "it": 0.9,
    "as": 0.7,
    "with": 0.7,
    "was": 0.7,
    "on": 0.6,
    "be": 0.6,
    "by": 0.5,
    "this": 0.5,
    "are": 0.5,
    "or": 0.4,
    "from": 0.4,
    "at": 0.4,
    "which": 0.3,
    "an": 0.3,
    "can": 0.3,
    "not": 0.3,
    "you": 0.3,
    "have": 0.3,
    "its": 0.2,
    "their": 0.2,
    "more": 0.2,
}


def vocabulary(rnd: random.Random, size: int = 5000) -> tuple[list[str], list[float]]:
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    tail = ["".join(rnd.choices(letters, weights=range(26, 0, -1), k=rnd.randint(3, 10))) for _ in range(size)]
    tail_share = 100 - sum(HEAD.values())
    zipf = [1 / (rank + 10) for rank in range(size)]
    scale = tail_share / sum(zipf)
    return list(HEAD) + tail, list(HEAD.values()) + [z * scale for z in zipf]


LANGUAGE_SPECS = [
    {"name": "language"},
    {"name": "language", "max_chars": 300},
    {"name": "language", "high_accuracy": False},
]
# Language detection needs real words (the made-up tail above is no language): records for it are
# drawn from these sentences.
ENGLISH = [
    "Photosynthesis turns light into chemical energy stored in sugars.",
    "The committee will meet again next week to review the budget proposal.",
    "A binary search halves the remaining range at every step, so it runs in logarithmic time.",
    "Rivers carry sediment downstream and deposit it where the current slows.",
    "Remember to water the tomatoes early in the morning during hot weather.",
    "The novel follows a young sailor who loses his ship in a storm off the coast.",
    "Interest rates affect how much people borrow and how much they save.",
    "To convert Celsius to Fahrenheit, multiply by nine fifths and add thirty-two.",
    "Good documentation explains why a design was chosen, not only what it does.",
    "The museum opens at ten and closes early on public holidays.",
    "Vaccines train the immune system to recognise a pathogen before an infection.",
    "She wrote a short letter thanking her neighbours for their help after the move.",
]

# A share of records that each filter should catch, so the chain does real work, not only fast paths.
SPICES = [
    lambda r, rnd: r.with_(output=r.output + " You can reach me at jane.roe@gmail.com or (415) 555-2671."),
    lambda r, rnd: r.with_(output="I'm sorry, but I cannot help with that request."),
    lambda r, rnd: r.with_(output=r.output + " and then the model said" * 12),
    lambda r, rnd: r.with_(instruction="Draw a picture of " + r.instruction),
    lambda r, rnd: r.with_(meta={"finish_reason": "length"}),
    lambda r, rnd: r.with_(output=""),
    lambda r, rnd: r.with_(
        output=r.output + f" Version {rnd.randint(1, 9)}.{rnd.randint(0, 20)}.3 "
        f"costs $1,{rnd.randint(100, 999)}.99 since 2023-04-01."
    ),
]


def synthetic(n: int, seed: int = 0) -> list[Record]:
    rnd = random.Random(seed)
    words, weights = vocabulary(rnd)
    cum = list(accumulate(weights))

    def text(k: int) -> str:
        return " ".join(rnd.choices(words, cum_weights=cum, k=k))

    out = []
    for i in range(n):
        instruction = f"{rnd.choice(VERBS)} {text(rnd.randint(6, 24))}."
        inp = text(rnd.randint(0, 20)) if rnd.random() < 0.5 else ""
        sentences = [text(rnd.randint(8, 20)).capitalize() + "." for _ in range(rnd.randint(2, 8))]
        r = Record(instruction, inp, " ".join(sentences), {"finish_reason": "stop", "n": i})
        if rnd.random() < 0.25:
            r = rnd.choice(SPICES)(r, rnd)
        out.append(r)
    return out


def run_chain(specs: list[dict], records: list[Record], batch: int) -> tuple[float, float, Chain]:
    """Wall and CPU seconds of a chain over the records: on a shared machine (a vLLM server on the
    same cores) the CPU time is the filters' own cost, the wall time also counts waiting for a core."""
    chain = Chain(build_chain(parse_specs(specs, where="specs")))
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(records), batch):
        chain.run(records[i : i + batch])
    return time.perf_counter() - wall, time.process_time() - cpu, chain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--language-records", type=int, default=5_000)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of the chain; the fastest counts, as timeit "
        "does: slower runs measure the neighbours on a shared machine",
    )
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    records = synthetic(args.records)
    chars = sum(len(r.instruction) + len(r.input) + len(r.output) for r in records) / len(records)
    runs = [run_chain(CHAIN, records, args.batch) for _ in range(args.repeat)]
    wall, cpu, chain = min(runs, key=lambda run: run[1])
    funnel = chain.funnel
    results = {
        "records": args.records,
        "repeat": args.repeat,
        "mean_chars": round(chars),
        "chain": [s["name"] for s in CHAIN],
        "cpu_seconds": round(cpu, 3),
        "wall_seconds": round(wall, 3),
        "records_per_cpu_s": round(args.records / cpu),
        "records_per_wall_s": round(args.records / wall),
        "load_average_1m": os.getloadavg()[0],
        "kept": funnel.kept,
        "drops": {k: dict(v) for k, v in funnel.drops.items()},
        "redactions": {k: dict(v) for k, v in funnel.redactions.items()},
    }
    sample = records[: min(20_000, args.records)]
    results["records_per_cpu_s_each_alone"] = {
        spec["name"]: round(len(sample) / min(run_chain([spec], sample, args.batch)[1] for _ in range(args.repeat)))
        for spec in CHAIN
    }
    if args.language_records:
        rnd = random.Random(1)
        lang_records = [
            Record(rnd.choice(ENGLISH), "", " ".join(rnd.choices(ENGLISH, k=rnd.randint(2, 8))))
            for _ in range(args.language_records)
        ]
        for spec in LANGUAGE_SPECS:
            run_chain([spec], lang_records[:10], args.batch)  # the first batch loads the models
            _, lang_cpu, _ = run_chain([spec], lang_records, args.batch)
            key = ",".join(f"{k}={v}" for k, v in spec.items() if k != "name") or "defaults"
            results.setdefault("language_records_per_cpu_s", {})[key] = round(len(lang_records) / lang_cpu)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    target = 20_000
    rate = results["records_per_cpu_s"]
    print(
        f"heuristic chain: {rate:,} records per CPU second, {results['records_per_wall_s']:,} per wall "
        f"second at load {results['load_average_1m']:.1f} "
        f"({'meets' if rate >= target else 'misses'} the {target:,}/s target)"
    )


if __name__ == "__main__":
    main()
