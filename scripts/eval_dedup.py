"""Dedup quality on the labeled paraphrase set (tests/data/paraphrase_groups.jsonl).

Each group has an instruction, paraphrases a curator calls the same task, and hard negatives (same
topic and wording, a different task). Every (instruction, candidate) pair is deduplicated as a
two-record dataset, instruction first: recall is the share of paraphrases dropped, negatives kept
the share of hard negatives that survive. Methods: our default (MiniLM, cosine >= 0.84), plain
cosine 0.9, ROUGE-L 0.7 (self-instruct's filter), SemHash with the same encoder at its default 0.9,
and the fast static path; plus the cosine sweep that chose the default.

    .venv/bin/python scripts/eval_dedup.py [--json out.json]
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

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "paraphrase_groups.jsonl"


def load_pairs() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    groups = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    para = [(g["instruction"], p) for g in groups for p in g["paraphrases"]]
    neg = [(g["instruction"], n) for g in groups for n in g["negatives"]]
    return para, neg


class Cached:
    """Encodes each distinct text once, so every method sees the same vectors."""

    def __init__(self, inner, texts: list[str]):
        self.name = inner.name
        self.vec = dict(zip(texts, inner.encode(texts)))

    def encode(self, texts, **_: object) -> np.ndarray:
        return np.stack([self.vec[t] for t in texts])


def cosine_sims(emb: Cached, pairs: list[tuple[str, str]]) -> np.ndarray:
    return np.array([float(emb.vec[a] @ emb.vec[b]) for a, b in pairs])


def filter_drops(emb: Cached, pairs: list[tuple[str, str]], threshold: float) -> np.ndarray:
    """The real filter on each pair (a fresh SemanticDedup per pair): was the second dropped?"""
    from generator.records import Record

    out = []
    for a, b in pairs:
        flt = SemanticDedup(threshold=threshold, embedder=emb)
        out.append(not flt.judge([Record(a), Record(b)])[1].keep)
    return np.array(out)


def rouge_drops(pairs: list[tuple[str, str]], threshold: float = 0.7) -> np.ndarray:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return np.array([scorer.score(a, b)["rougeL"].fmeasure > threshold for a, b in pairs])


def semhash_drops(emb: Cached, pairs: list[tuple[str, str]], threshold: float = 0.9) -> np.ndarray:
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
        req = urllib.request.Request(f"{base_url.rstrip('/')}/chat/completions", body,
                                     {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
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
    """What SemanticDedup with `judge_band` decides on each two-record pair, asked in one round."""
    from filters.dedup import JUDGE_PROMPT

    sims = cosine_sims(emb, pairs)
    ask = [i for i, s in enumerate(sims) if band[0] <= s < band[1]]
    answers = chat([[{"role": "user", "content": JUDGE_PROMPT.format(a=pairs[i][0], b=pairs[i][1])}]
                    for i in ask], {"max_tokens": 3, "temperature": 0.0})
    out = sims >= band[1]
    for i, a in zip(ask, answers):
        out[i] = bool(a and a.strip().lower().startswith("yes"))
    return out


def row(name: str, para_dropped: np.ndarray, neg_dropped: np.ndarray) -> dict[str, object]:
    r = {"method": name, "paraphrase_recall": round(float(para_dropped.mean()), 3),
         "negatives_kept": round(float(1 - neg_dropped.mean()), 3)}
    print(f"{name:<36} recall {r['paraphrase_recall']:.3f}   negatives kept {r['negatives_kept']:.3f}")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--judge-endpoint", help="OpenAI-compatible base URL (ending in /v1) to measure the "
                    "LLM judge stage on the band --judge-band")
    ap.add_argument("--judge-key", default="EMPTY")
    ap.add_argument("--judge-model", default="")
    ap.add_argument("--judge-band", type=float, nargs=2, default=[0.76, 0.94])
    args = ap.parse_args()
    para, neg = load_pairs()
    texts = sorted({t for a, b in para + neg for t in (a, b)})
    print(f"{len(para)} paraphrase pairs, {len(neg)} hard-negative pairs, {len(texts)} texts")
    t0 = time.perf_counter()
    minilm = Cached(SentenceTransformerEmbedder(), texts)
    static = Cached(StaticEmbedder(), texts)
    print(f"encoded in {time.perf_counter() - t0:.1f} s")
    default = SemanticDedup.__init__.__defaults__[0]  # type: ignore[index]
    results = [
        row(f"ours: MiniLM cosine >= {default}", filter_drops(minilm, para, default),
            filter_drops(minilm, neg, default)),
        row("plain cosine >= 0.9 (MiniLM)", cosine_sims(minilm, para) >= 0.9, cosine_sims(minilm, neg) >= 0.9),
        row("ROUGE-L > 0.7", rouge_drops(para), rouge_drops(neg)),
        row("SemHash 0.9 (same MiniLM vectors)", semhash_drops(minilm, para), semhash_drops(minilm, neg)),
        row(f"fast static path, cosine >= {default}", cosine_sims(static, para) >= default,
            cosine_sims(static, neg) >= default),
    ]
    band = tuple(args.judge_band)
    ps, ns = cosine_sims(minilm, para), cosine_sims(minilm, neg)
    results.append(row(f"ceiling: perfect judge on {band}", (ps >= band[0]), ns >= band[1]))
    if args.judge_endpoint:
        chat = make_chat(args.judge_endpoint, args.judge_key, args.judge_model)
        results.append(row(f"LLM judge {args.judge_model} on {band}", judge_drops(minilm, para, band, chat),
                           judge_drops(minilm, neg, band, chat)))
    print("\ncosine sweep (recall / negatives kept):")
    sweep = {}
    for name, emb in (("minilm", minilm), ("static", static)):
        ps, ns = cosine_sims(emb, para), cosine_sims(emb, neg)
        sweep[name] = {f"{t:.2f}": [round(float((ps >= t).mean()), 3), round(float((ns < t).mean()), 3)]
                       for t in np.arange(0.70, 0.96, 0.02)}
        print(f"  {name:<7}", "  ".join(f"{t}: {r:.2f}/{k:.2f}" for t, (r, k) in sweep[name].items()))
    if args.json:
        args.json.write_text(json.dumps({"methods": results, "sweep": sweep}, indent=1))


if __name__ == "__main__":
    main()
