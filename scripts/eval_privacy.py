"""Near-copy detection on real text: private records (a benchmark's items) against candidate rows
that copy some verbatim, reword some, and are ordinary for the rest (`meta.group`); prints each
group's cosine to its closest private record with the privacy audit's encoder, and the share of
reworded rows above every ordinary row.

    .venv/bin/python scripts/eval_privacy.py PRIVATE.jsonl CANDIDATES.jsonl --encoder lexical
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from filters.privacy import PrivateSet, row_fields  # noqa: E402
from filters.specs import PrivacySettings  # noqa: E402


def _text(row: dict) -> str:
    inputs = [i.get("input", "") for i in row.get("instances", [])] or [row.get("input", "")]
    return "\n".join([row.get("instruction", ""), *inputs]).strip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("private", type=Path)
    p.add_argument("candidates", type=Path)
    p.add_argument("--encoder", default="lexical", choices=["lexical", "minilm", "static"])
    args = p.parse_args()
    private = [_text(json.loads(line)) for line in args.private.read_text().splitlines() if line.strip()]
    rows = [json.loads(line) for line in args.candidates.read_text().splitlines() if line.strip()]
    t = time.perf_counter()
    ps = PrivateSet(private, settings=PrivacySettings(encoder=args.encoder))
    fields = [row_fields(r) for r in rows]
    sims, _ = ps.similarity(fields)
    spans = np.array([ps.longest(f).words for f in fields])
    groups = np.array([r["meta"]["group"] for r in rows])
    for g in sorted(set(groups)):
        s = sims[groups == g]
        print(
            f"{g:10s} n={len(s):4d} cosine min {s.min():.3f} median {np.median(s):.3f} max {s.max():.3f}; "
            f"8+ shared words {np.mean(spans[groups == g] >= 8):.0%}"
        )
    ordinary = sims[groups == "ordinary"].max()
    print(f"reworded above every ordinary row: {np.mean(sims[groups == 'reworded'] > ordinary):.0%}")
    print(f"{time.perf_counter() - t:.1f} s ({args.encoder})")


if __name__ == "__main__":
    main()
