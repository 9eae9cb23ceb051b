"""The representation audit's cost against the verb-object pass the report already makes over
every row, on the same rows, in one process after a warm-up (BENCHMARKS.md, Bias and representation).

    PYTHONPATH=$PWD python scripts/bench_representation.py ROWS.jsonl [--repeat 2]

ROWS.jsonl: one JSON object per line with `instruction` (and optionally `input`, `output`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", type=Path)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    from generator.report.names import names_table
    from generator.report.representation import measure_representation
    from generator.report.verbs import count_pairs

    rows = [json.loads(line) for line in args.rows.read_text(encoding="utf-8").splitlines() if line.strip()]
    t = time.perf_counter()
    names_table()
    print(f"names data loaded in {time.perf_counter() - t:.2f} s")
    count_pairs(["warm up the lexicon"])
    measure_representation(rows[:10])
    for _ in range(args.repeat):
        t = time.perf_counter()
        count_pairs(str(r.get("instruction") or "") for r in rows)
        verbs = time.perf_counter() - t
        t = time.perf_counter()
        rep = measure_representation(rows)
        audit = time.perf_counter() - t
        print(
            f"{len(rows)} rows: verbs {verbs:.2f} s, representation {audit:.2f} s (ratio {audit / verbs:.2f}); "
            f"{rep.rows_with_mention} rows mention a group"
        )


if __name__ == "__main__":
    main()
