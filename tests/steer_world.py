"""A clustered stand-in model for the steering test and benchmark (tests/test_steer.py,
scripts/bench_steer.py), served through tests/fake_openai.py (`FakeOpenAI(reply=fake_reply)`).

The world has topics, each a few instruction templates that name the topic's marker word: three
dense ones (poem, email, recipe) the model drifts to on its own, and twelve sparse ones it writes
about only when a demonstration shows one (or, with the custom method, the prompt's topic is
one). Asked for new tasks, it writes each one, with probability `DRIFT`, on a dense topic, else on
the topic of one of the demonstrations it was shown (a demonstration on no known topic sends it
to a dense one). Anything else it is asked (an answer to a task) gets a plain answer. Every answer
is a function of the prompt alone.

The diversity measures the comparison reports are here too.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np

DRIFT = 0.5
DENSE = ("poem", "email", "recipe")
TOPICS: dict[str, tuple[str, ...]] = {
    "poem": (
        "Write a poem about {s}.",
        "Compose a rhyming poem that mentions {s}.",
        "Write a short free-verse poem inspired by {s}.",
    ),
    "email": (
        "Write an email to a colleague about {s}.",
        "Draft a polite email asking a neighbour about {s}.",
        "Write a follow-up email to a client regarding {s}.",
    ),
    "recipe": (
        "Suggest a recipe for a dinner party themed around {s}.",
        "Write a simple recipe a child could cook, inspired by {s}.",
        "Give a vegetarian recipe for a picnic about {s}.",
    ),
    "sql": (
        "Write an SQL query that counts the rows about {s} in a table.",
        "Explain what this SQL join returns for a table of {s}.",
        "Design an SQL schema to store data about {s}.",
    ),
    "chess": (
        "Explain a chess opening using {s} as a metaphor.",
        "Describe a chess puzzle whose theme is {s}.",
        "Give three chess strategy tips illustrated with {s}.",
    ),
    "tax": (
        "Explain how income tax applies to money earned from {s}.",
        "List the tax deductions a small business built on {s} might claim.",
        "Summarize the sales tax rules for selling {s}.",
    ),
    "volcano": (
        "Explain how a volcano eruption could affect {s}.",
        "Describe the geology of a volcano for a lesson about {s}.",
        "Compare a volcano to {s} for a science class.",
    ),
    "regex": (
        "Write a regex that matches phone numbers in notes about {s}.",
        "Explain this regex pattern for log lines that mention {s}.",
        "Build a regex to extract dates from a report on {s}.",
    ),
    "resume": (
        "Rewrite a resume bullet point about volunteering with {s}.",
        "Give feedback on a resume for a job involving {s}.",
        "Suggest resume skills for someone who worked on {s}.",
    ),
    "physics": (
        "Explain the physics of friction using {s} as an example.",
        "Solve a physics problem about the energy of {s}.",
        "Describe which physics law explains {s}.",
    ),
    "translation": (
        "Translate a sentence about {s} into Spanish.",
        "Give a French translation of a short note about {s}.",
        "Check this German translation of a sign about {s}.",
    ),
    "riddle": (
        "Write a riddle whose answer is {s}.",
        "Make up a riddle for children about {s}.",
        "Explain the answer to a riddle involving {s}.",
    ),
    "grammar": (
        "Correct the grammar in a paragraph about {s}.",
        "Explain the grammar rule broken in a sentence about {s}.",
        "Identify the grammar mistakes in a review of {s}.",
    ),
    "negotiation": (
        "Give negotiation tips for buying {s}.",
        "Role-play a salary negotiation for a job about {s}.",
        "Describe a negotiation strategy for a deal involving {s}.",
    ),
    "statistics": (
        "Compute the mean and median statistics of survey answers about {s}.",
        "Explain which statistics test compares two groups of {s}.",
        "Interpret the statistics in a chart about {s}.",
    ),
}
SUBJECTS = (
    "the ocean", "a rainy Monday", "old bicycles", "city gardens", "lost keys", "a night train",
    "mountain villages", "coffee shops", "school lunches", "winter storms", "street markets",
    "paper kites", "a broken clock", "honey bees", "electric cars", "public libraries",
    "desert roads", "birthday cakes", "jazz records", "wind farms", "a first job", "river boats",
    "sunflowers", "board games", "lighthouses", "moving house", "wool sweaters", "fire stations",
    "tiny apartments", "a marathon", "museum tours", "snowy forests", "tea ceremonies",
    "second-hand books", "a family reunion", "harbour cranes", "vegetable soup", "summer camps",
    "violin lessons", "late trains",
)  # fmt: skip
_ASKED = re.compile(r"Write (\d+) (?:new )?tasks")
_LINE = re.compile(r"^\s*\d+\.\s+(.*\S)\s*$")
_TOPIC = re.compile(r"^Topic: (.*)$", re.MULTILINE)  # the custom method's prompt


def topic_of(text: str) -> str | None:
    words = set(re.findall(r"[a-z]+", text.lower()))
    return next((t for t in TOPICS if t in words), None)


def fake_reply(body: dict, i: int) -> str:
    """`reply` as the fake server calls it: to the request's prompt (its last message)."""
    return reply(body["prompt"] if "prompt" in body else body["messages"][-1]["content"])


def reply(prompt: str) -> str:
    """What the stand-in model answers to `prompt`."""
    asked = _ASKED.search(prompt)
    if asked is None:
        return "Here is a careful answer to the task, with one short example and a closing tip for the reader."
    head = prompt[: asked.start()]
    demos = [m.group(1) for line in head.splitlines() if (m := _LINE.match(line))]
    demos += _TOPIC.findall(prompt)
    rng = random.Random(hashlib.sha256(prompt.encode()).digest())
    lines = []
    for i in range(int(asked.group(1))):
        topic = rng.choice(DENSE) if rng.random() < DRIFT or not demos else topic_of(rng.choice(demos))
        topic = topic or rng.choice(DENSE)
        lines.append(f"{i + 1}. " + rng.choice(TOPICS[topic]).format(s=rng.choice(SUBJECTS)))
    return "\n".join(lines)


def write_seeds(path: Path, per_topic: int = 2, seed: int = 0) -> Path:
    """Seed tasks: `per_topic` on each topic, in the seed-task format; `seed` picks their subjects."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for topic, templates in TOPICS.items():
            for j in range(per_topic):
                text = templates[j % len(templates)].format(s=rng.choice(SUBJECTS))
                row = {
                    "id": f"seed_{topic}_{j}",
                    "instruction": text,
                    "instances": [{"input": "", "output": "An answer."}],
                }
                f.write(json.dumps(row) + "\n")
    return path


# -- measures --------------------------------------------------------------------------------------


def vendi_score(x: np.ndarray) -> float:
    """LOCAL VENDI (stand-in until generator/report/metrics.py has one): exp of the Shannon entropy
    of the eigenvalues of K/n, K the cosine similarity matrix of the L2-normalized rows of `x`.
    1 when all rows are alike, n when all are orthogonal."""
    n = len(x)
    if n == 0:
        return 0.0
    eig = np.linalg.eigvalsh((x @ x.T) / n)
    eig = eig[eig > 1e-12]
    return float(math.exp(-(eig * np.log(eig)).sum()))


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Distinct word n-grams over all n-grams."""
    grams = [tuple(w[i : i + n]) for t in texts for w in [t.lower().split()] for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def topic_measures(texts: list[str]) -> dict[str, float]:
    """Coverage of the world's topics: the effective number of topics (exp of the entropy of their
    shares), the sparse topics' share, and the smallest topic's count."""
    counts = Counter(topic_of(t) for t in texts)
    total = sum(counts.values())
    shares = [c / total for c in counts.values() if c]
    return {
        "effective_topics": math.exp(-sum(p * math.log(p) for p in shares)),
        "sparse_share": sum(c for t, c in counts.items() if t not in DENSE) / total,
        "min_topic": min(counts.get(t, 0) for t in TOPICS),
    }


def measures(texts: list[str], seeds: list[str], embed) -> dict[str, float]:
    """Every diversity measure of `texts` (instructions), `embed` giving L2-normalized rows."""
    x, s = embed(texts), embed(seeds)
    return {
        "vendi": vendi_score(x),
        "distinct_2": distinct_n(texts, 2),
        **topic_measures(texts),
        "nearest_seed_sim": float((x @ s.T).max(axis=1).mean()),
    }


# -- one run ---------------------------------------------------------------------------------------


def run_world(work: Path, url: str, seeds: Path, *, target: int, steer: dict, **generation) -> dict[str, float]:
    """`generate` self-instruct against the stand-in model at `url` for `target` instructions with
    the `generation.steer` settings `steer`; the final dataset's measures, acceptance and requests."""
    import datasets

    from filters.embed import make_embedder
    from generator.config import parse_config
    from generator.run.pipeline import generate

    config = parse_config(
        {
            "run_dir": str(work / "run"),
            "model": {"name": "fake", "served_name": "fake-model"},
            "server": {"endpoints": [url]},
            "engine": {"concurrency": 8},
            "generation": {
                "seeds": str(seeds),
                "num_instructions": target,
                "instances": "response",
                "max_rounds": 100,
                "stall_rounds": 100,
                "steer": steer,
                **generation,
            },
            "report": {"enabled": False},  # its measures are taken below, on the whole dataset
        }
    )
    result = generate(config, fresh=True, progress=False)
    texts = datasets.load_dataset(str(result.dataset_dir))["train"]["instruction"]
    rounds = json.loads((result.run_dir / "rounds.json").read_text())["rounds"]
    seed_texts = [json.loads(line)["instruction"] for line in seeds.read_text().splitlines()]
    embedder = make_embedder("minilm")
    return {
        "records": len(texts),
        **measures(texts, seed_texts, embedder.encode),
        "acceptance": sum(r["accepted"] for r in rounds) / max(1, sum(r["candidates"] for r in rounds)),
        "requests": sum(r["requests"] for r in rounds),
    }
