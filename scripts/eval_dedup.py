"""Dedup quality on the labeled paraphrase sets.

Each group has an instruction, paraphrases a curator calls the same task, and hard negatives (same
topic and wording, a different task). Every (instruction, candidate) pair is deduplicated as a
two-record dataset, instruction first: recall is the share of paraphrases dropped, negatives kept
the share of hard negatives that survive. Methods: our default (SemanticDedup's defaults: up to 4
MiniLM neighbours at cosine >= 0.76, `candidates`, then the pair check), the same without the pair
check (cosine >= 0.84, `threshold`), plain cosine 0.9, ROUGE-L 0.7 (self-instruct's filter), SemHash
with the same encoder at its default 0.9, and the fast static path at cosine >= 0.84; with
--judge-endpoint, the LLM judge on --judge-band; plus the cosine sweep that chose the 0.84.

Sets (tests/data/): `paraphrase_groups.jsonl` (107 groups, the quality target's set),
`paraphrase_groups_heldout.jsonl` (120 groups written apart, never used to fit or tune anything),
`templated_pairs.jsonl` (20 templated prompts: reviews, passages, concept lists, word problems; the
paraphrases reword the template around the same content, the negatives fill it with other content;
never fitted on), and `paraphrase_groups_train.jsonl` (184 groups the pair check was fitted on, 24 of
them templated; in-sample, shown last).

    .venv/bin/python scripts/eval_dedup.py [--sets NAME ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from filters.dedup import SemanticDedup  # noqa: E402
from filters.embed import SentenceTransformerEmbedder, StaticEmbedder  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SETS = ("paraphrase_groups", "paraphrase_groups_heldout", "templated_pairs", "paraphrase_groups_train")


def load_pairs(name: str = "paraphrase_groups") -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    groups = [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines() if line.strip()]
    para = [(g["instruction"], p) for g in groups for p in g["paraphrases"]]
    neg = [(g["instruction"], n) for g in groups for n in g["negatives"]]
    return para, neg


def neighbour_pairs(name: str, emb: Cached, floor: float = 0.6) -> list[tuple[str, str]]:
    """Ordinary neighbours: texts of different groups (different tasks) at MiniLM cosine >= `floor`."""
    groups = [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines() if line.strip()]
    texts = [(t, gi) for gi, g in enumerate(groups) for t in (g["instruction"], *g["paraphrases"], *g["negatives"])]
    return [
        (a, b)
        for i, (a, ga) in enumerate(texts)
        for b, gb in texts[i + 1 :]
        if ga != gb and float(emb.vec[a] @ emb.vec[b]) >= floor
    ]


class Cached:
    """Encodes each distinct text once, so every method sees the same vectors."""

    def __init__(self, inner, texts: list[str]):
        self.name = inner.name
        self.vec = dict(zip(texts, inner.encode(texts)))

    def encode(self, texts, **_: object) -> np.ndarray:
        return np.stack([self.vec[t] for t in texts])


def cosine_sims(emb: Cached, pairs: list[tuple[str, str]]) -> np.ndarray:
    return np.array([float(emb.vec[a] @ emb.vec[b]) for a, b in pairs])


def filter_drops(emb: Cached, pairs: list[tuple[str, str]], **params: object) -> np.ndarray:
    if not pairs:
        return np.zeros(0, bool)
    """The real filter on each pair (a fresh SemanticDedup per pair): was the second dropped?"""
    from generator.core.records import Record

    out = []
    for a, b in pairs:
        flt = SemanticDedup(embedder=emb, **params)  # type: ignore[arg-type]
        out.append(not flt.judge([Record(a), Record(b)])[1].keep)
    return np.array(out)


def rouge_drops(pairs: list[tuple[str, str]], threshold: float = 0.7) -> np.ndarray:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return np.array([scorer.score(a, b)["rougeL"].fmeasure > threshold for a, b in pairs])


def semhash_drops(emb: Cached, pairs: list[tuple[str, str]], threshold: float = 0.9) -> np.ndarray:
    if not pairs:
        return np.zeros(0, bool)
    from semhash import SemHash

    out = []
    for a, b in pairs:
        result = SemHash.from_records([a, b], model=emb).self_deduplicate(threshold=threshold)
        out.append(len(result.selected) == 1)
    return np.array(out)


def make_chat(base_url: str, key: str, model: str):
    """A `BatchChat` over an OpenAI-compatible endpoint, 16 requests at a time."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    def one(messages: list[dict[str, str]], extra: dict) -> str | None:
        body = json.dumps({"model": model, "messages": messages, **extra}).encode()
        req = urllib.request.Request(
            f"{base_url.rstrip('/')}/chat/completions",
            body,
            {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return json.loads(resp.read())["choices"][0]["message"]["content"]
        except OSError:
            return None

    def chat(convs: list[list[dict[str, str]]], extra: dict) -> list[str | None]:
        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(lambda m: one(m, extra), convs))

    return chat


def judge_drops(emb: Cached, pairs: list[tuple[str, str]], band: tuple[float, float], chat) -> np.ndarray:
    if not pairs:
        return np.zeros(0, bool)
    """What SemanticDedup with `judge_band` decides on each two-record pair, asked in one round."""
    from filters.dedup import judge_prompt

    sims = cosine_sims(emb, pairs)
    ask = [i for i, s in enumerate(sims) if band[0] <= s < band[1]]
    answers = chat(
        [[{"role": "user", "content": judge_prompt(pairs[i][0], pairs[i][1])}] for i in ask],
        {"max_tokens": 3, "temperature": 0.0},
    )
    out = sims >= band[1]
    for i, a in zip(ask, answers):
        out[i] = bool(a and a.strip().lower().startswith("yes"))
    return out


def row(name: str, para_dropped: np.ndarray, neg_dropped: np.ndarray, nb_dropped: np.ndarray) -> dict[str, object]:
    r = {
        "method": name,
        "paraphrase_recall": round(float(para_dropped.mean()), 3),
        "negatives_kept": round(float(1 - neg_dropped.mean()), 3),
        "neighbours_kept": round(float(1 - nb_dropped.mean()), 3) if len(nb_dropped) else None,
    }
    print(
        f"{name:<42} recall {r['paraphrase_recall']:.3f}   hard negatives kept {r['negatives_kept']:.3f}"
        f"   neighbours kept {r['neighbours_kept']}"
    )
    return r


def evaluate(name: str, minilm_inner, static_inner, args) -> dict[str, object]:
    para, neg = load_pairs(name)
    texts = sorted({t for a, b in para + neg for t in (a, b)})
    minilm, static = Cached(minilm_inner, texts), Cached(static_inner, texts)
    nb = neighbour_pairs(name, minilm)
    print(
        f"\n== {name}: {len(para)} paraphrase pairs, {len(neg)} hard-negative pairs, "
        f"{len(nb)} ordinary neighbour pairs (different groups, MiniLM cosine >= 0.6)"
    )
    default = SemanticDedup.__init__.__defaults__[0]  # type: ignore[index]

    def each(fn, *a, **kw):
        return [fn(*a, pairs, **kw) for pairs in (para, neg, nb)]

    def cos(emb, t):
        return [cosine_sims(emb, pairs) >= t if pairs else np.zeros(0, bool) for pairs in (para, neg, nb)]

    results = [
        row("ours, default: MiniLM + pair check", *each(filter_drops, minilm)),
        row(f"ours, pair_check off (cosine >= {default})", *each(filter_drops, minilm, pair_check=False)),
        row("plain cosine >= 0.9 (MiniLM)", *cos(minilm, 0.9)),
        row("ROUGE-L > 0.7", *[rouge_drops(p) if p else np.zeros(0, bool) for p in (para, neg, nb)]),
        row("SemHash 0.9 (same MiniLM vectors)", *each(semhash_drops, minilm)),
        row(f"fast static path, cosine >= {default}", *cos(static, default)),
    ]
    if args.judge_endpoint:
        band = tuple(args.judge_band)
        chat = make_chat(args.judge_endpoint, args.judge_key, args.judge_model)
        results.append(row(f"LLM judge {args.judge_model} on {band}", *each(judge_drops, minilm, band=band, chat=chat)))
    sweep = {}
    for enc, emb in (("minilm", minilm), ("static", static)):
        ps, ns = cosine_sims(emb, para), cosine_sims(emb, neg)
        sweep[enc] = {
            f"{t:.2f}": [round(float((ps >= t).mean()), 3), round(float((ns < t).mean()), 3)]
            for t in np.arange(0.70, 0.96, 0.02)
        }
        print(f"  cosine sweep {enc:<7}", "  ".join(f"{t}: {r:.2f}/{k:.2f}" for t, (r, k) in sweep[enc].items()))
    return {"methods": results, "sweep": sweep}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument(
        "--judge-endpoint",
        help="OpenAI-compatible base URL (ending in /v1) to measure the LLM judge stage on the band --judge-band",
    )
    ap.add_argument("--judge-key", default="EMPTY")
    ap.add_argument("--judge-model", default="")
    ap.add_argument("--judge-band", type=float, nargs=2, default=[0.76, 0.94])
    args = ap.parse_args()
    t0 = time.perf_counter()
    minilm, static = SentenceTransformerEmbedder(), StaticEmbedder()
    out = {name: evaluate(name, minilm, static, args) for name in args.sets}
    print(f"\n{time.perf_counter() - t0:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
