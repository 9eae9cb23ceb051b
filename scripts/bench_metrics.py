"""Benchmark of the dataset measures (`generator.report.measure`) on synthetic rows.

The rows are made from templates: an imperative verb, an object, a topic and a modifier drawn
from word lists (about 10 million distinct instructions possible), a quarter with an input, an
output of 20-80 words. Their numbers mean nothing; what is measured is the time and memory of
each measure at this size. Each setting runs in a fresh process (imports and the encoder's load
count, as they do for a user); peak RSS from that process.

    python scripts/bench_metrics.py                         # 50,000 rows, sample 5,000, t-SNE map
    python scripts/bench_metrics.py --rows 50000 --sample 2000 5000 --projection pca tsne

Prints one JSON line per setting: rows, sample, projection, wall seconds, peak RSS MiB, the
seconds of each measure, and the headline values.
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

VERBS = "Write Explain Summarize Generate List Describe Translate Classify Rewrite Give Create Suggest Compare Find Design Outline Draft Name Identify Plan".split()  # noqa: E501
OBJECTS = [
    "a poem", "a short story", "an email", "a summary", "three tips", "a list of ideas", "a Python function",
    "a product description", "a tweet", "a haiku", "an essay outline", "five questions", "a recipe",
    "a slogan", "a cover letter", "two arguments", "a lesson plan", "a SQL query", "a dialogue", "a title",
]  # fmt: skip
TOPICS = [
    "climate change", "the ocean", "a rainy day", "machine learning", "healthy eating", "the French revolution",
    "a job interview", "space travel", "friendship", "remote work", "gardening", "electric cars", "a birthday",
    "the stock market", "volcanoes", "a small bakery", "chess", "sleep", "recycling", "ancient Rome", "jazz",
    "public transport", "a lost dog", "photosynthesis", "a mountain hike", "online privacy", "coffee",
    "the moon landing", "city parks", "learning a language", "a football match", "solar panels", "honey bees",
]  # fmt: skip
MODIFIERS = [
    "", " for children", " in a formal tone", " in under 50 words", " for a beginner", " with a twist ending",
    " using simple words", " for a newsletter", " as a bulleted list", " from the point of view of a cat",
    " that a teenager would enjoy", " for a busy manager", " in the style of a news report", " with examples",
]  # fmt: skip
WORDS = "the a of to and in is it that for on with as was by this be are from at or an have not but can".split()


def rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        instruction = f"{rng.choice(VERBS)} {rng.choice(OBJECTS)} about {rng.choice(TOPICS)}{rng.choice(MODIFIERS)}."
        text_input = " ".join(rng.choice(WORDS + TOPICS) for _ in range(rng.randint(5, 30))) if i % 4 == 0 else ""
        output = " ".join(rng.choice(WORDS + TOPICS) for _ in range(rng.randint(20, 80)))
        task = "classification" if instruction.startswith("Classify") else "generation"
        out.append({"instruction": instruction, "input": text_input, "output": output, "meta": {"task_type": task}})
    return out


def child(n: int, sample: int, projection: str, encoder: str) -> None:
    data = rows(n)
    seeds = [r["instruction"] for r in rows(175, seed=1)]
    from generator.report import measure

    start = time.perf_counter()
    m = measure(data, seeds, encoder=encoder, sample=sample, projection=projection)
    wall = time.perf_counter() - start
    print(
        json.dumps(
            {
                "rows": n,
                "sample": sample,
                "projection": projection,
                "encoder": m.encoder,
                "wall_s": round(wall, 2),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "seconds": m.seconds,
                "vendi": m.vendi,
                "mean_pairwise_distance": m.mean_pairwise_distance,
                "distinct_1": m.distinct_1,
                "distinct_2": m.distinct_2,
                "self_bleu": m.self_bleu,
                "verb_coverage": m.verb_coverage,
                "top_verbs": m.verbs[:5],
                "nearest_seed_median": m.nearest_seed_median,
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=50_000)
    p.add_argument("--sample", type=int, nargs="+", default=[5000])
    p.add_argument("--projection", nargs="+", default=["tsne"], choices=["pca", "tsne"])
    p.add_argument("--encoder", default="minilm", choices=["minilm", "static"])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.rows, args.sample[0], args.projection[0], args.encoder)
        return
    for sample in args.sample:
        for projection in args.projection:
            cmd = [sys.executable, __file__, "--child", "--rows", str(args.rows), "--sample", str(sample)]
            cmd += ["--projection", projection, "--encoder", args.encoder]
            out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
            print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
