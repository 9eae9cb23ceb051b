"""Fit the dedup pair check (filters/pairs.py) for one encoder and store it in filters/data/pair_check.json.

Pairs come from labeled sets (by default tests/data/paraphrase_groups_train.jsonl and
tests/data/paraphrase_groups.jsonl; never paraphrase_groups_heldout.jsonl, which stays blind): each
instruction with its paraphrases (label 1) and its hard negatives (label 0), plus ordinary neighbours:
texts of different groups at cosine `--neighbour-floor` (0.6) or more (label 0), so that the check also learns that two
unrelated instructions are not a heavy rewording of each other. A logistic regression (scikit-learn,
C=10) over filters.pairs.FEATURES is fitted on all pairs. The decision threshold is the one that
maximizes the worst of paraphrase recall, hard negatives kept and ordinary neighbours kept in 8-fold
cross-validation by group, counting pairs below the `candidates` floor as never checked.

    .venv/bin/python scripts/fit_pair_check.py                      # the default MiniLM encoder
    .venv/bin/python scripts/fit_pair_check.py --encoder static     # the fast static path
    .venv/bin/python scripts/fit_pair_check.py --check              # refit and compare with the stored weights
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from filters.embed import make_embedder  # noqa: E402
from filters.pairs import FEATURES, WEIGHTS, features  # noqa: E402

DATA = ROOT / "tests" / "data"
TRAIN = [DATA / "paraphrase_groups_train.jsonl", DATA / "paraphrase_groups.jsonl"]
KINDS = ("paraphrase", "hard_negative", "neighbour")


def load_pairs(paths: list[Path], embedder, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, kind of each pair (index into KINDS), group of each pair) over all files."""
    rows, kinds, groups = [], [], []
    for fi, path in enumerate(paths):
        found = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        texts = [(t, gi) for gi, g in enumerate(found) for t in (g["instruction"], *g["paraphrases"], *g["negatives"])]
        vecs = embedder.encode([t for t, _ in texts])
        vec = {t: v for (t, _), v in zip(texts, vecs)}
        gid = fi * 100_000
        for gi, g in enumerate(found):
            for text, kind in [(p, 0) for p in g["paraphrases"]] + [(n, 1) for n in g["negatives"]]:
                rows.append(features(float(vec[g["instruction"]] @ vec[text]), g["instruction"], text))
                kinds.append(kind)
                groups.append(gid + gi)
        sims = vecs @ vecs.T
        for i, j in zip(*np.nonzero(np.triu(sims, 1) >= floor)):
            (a, ga), (b, gb) = texts[i], texts[j]
            if ga != gb:
                rows.append(features(float(sims[i, j]), a, b))
                kinds.append(2)
                groups.append(gid + ga)
    return np.array(rows), np.array(kinds), np.array(groups)


def rates(p: np.ndarray, kinds: np.ndarray, threshold: float) -> list[float]:
    """Paraphrase recall, hard negatives kept, neighbours kept."""
    same = p >= threshold
    return [float(same[kinds == 0].mean()), float(1 - same[kinds == 1].mean()), float(1 - same[kinds == 2].mean())]


def fit(x: np.ndarray, kinds: np.ndarray, groups: np.ndarray, floor: float) -> dict[str, object]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    def model():
        return LogisticRegression(C=10.0, max_iter=10_000)

    y = (kinds == 0).astype(int)
    checked = x[:, 0] >= floor
    cv = np.zeros(len(y))
    for tr, te in GroupKFold(8).split(x, y, groups):
        cv[te] = model().fit(x[tr], y[tr]).predict_proba(x[te])[:, 1]
    cv *= checked
    grid = np.round(np.arange(0.20, 0.81, 0.02), 2)
    scores = [(min(rates(cv, kinds, t)), -abs(t - 0.5), t) for t in grid]
    threshold = float(max(scores)[2])
    final = model().fit(x, y)
    return {
        "features": list(FEATURES),
        "coef": [round(float(c), 6) for c in final.coef_[0]],
        "intercept": round(float(final.intercept_[0]), 6),
        "threshold": threshold,
        "candidates": floor,
        "cv": dict(zip(KINDS, (round(r, 3) for r in rates(cv, kinds, threshold)))),
        "pairs": dict(zip(KINDS, (int((kinds == k).sum()) for k in range(3)))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", default="minilm", choices=["minilm", "static"])
    ap.add_argument("--model", help="sentence-transformers folder or name (default: the bundled MiniLM)")
    ap.add_argument("--data", type=Path, nargs="+", default=TRAIN)
    ap.add_argument("--candidates", type=float, default=0.76, help="the cosine floor below which no pair is checked")
    ap.add_argument(
        "--neighbour-floor",
        type=float,
        default=0.6,
        help="texts of different groups at this cosine or more are ordinary-neighbour pairs",
    )
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    ap.add_argument("--check", action="store_true", help="refit and fail if the stored weights differ")
    args = ap.parse_args()
    embedder = make_embedder(args.encoder, args.model)
    x, kinds, groups = load_pairs(args.data, embedder, args.neighbour_floor)
    result = fit(x, kinds, groups, args.candidates)
    result["trained_on"] = [f"{p.name} sha256:{hashlib.sha256(p.read_bytes()).hexdigest()[:16]}" for p in args.data]
    stored = json.loads(args.out.read_text()) if args.out.is_file() else {}
    print(f"{embedder.name}: {json.dumps(result)}")
    if args.check:
        old = stored.get(embedder.name)
        if old is None:
            sys.exit(f"no stored weights for {embedder.name} in {args.out}")
        diffs = [abs(a - b) for a, b in zip(old["coef"] + [old["intercept"]], result["coef"] + [result["intercept"]])]
        if max(diffs) > 0.05 or old["threshold"] != result["threshold"] or old["features"] != result["features"]:
            sys.exit(f"stored weights differ from a refit: stored {old}, refit {result}")
        print("stored weights match a refit")
        return
    stored[embedder.name] = result
    args.out.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
