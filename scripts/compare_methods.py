"""Every generation method's example config on the same model, to the same record target: rows per
minute, acceptance, and rows to read blind (issue 25: which method `make demo` runs).

Each config runs to `--records` rows (`generation.num_records`, the run refills until it has them),
without the HTML report, against one server for all (`--endpoint`, a vLLM server already running:
the same batching for every method) or a managed one per run (no `--endpoint`: each run pays a
start). Prints one table row per method (rows, wall s, rows per minute, requests, tokens generated
per row kept: the cost whatever else the machine runs, acceptance: rows kept of candidates made)
and writes `blind.md` in `--out`: `--read` rows per method, shuffled together under letters, the
key at the end. A run directory already in `--out` resumes (a finished one sends nothing): configs
can be added to an earlier comparison.

    python scripts/compare_methods.py --endpoint http://127.0.0.1:8000/v1 --key-env KEY --out /tmp/methods
    python scripts/compare_methods.py --configs self-instruct.yaml magpie.yaml --records 10
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.config import load_config  # noqa: E402
from generator.core.errors import InstructforgeError  # noqa: E402
from generator.methods.registry import METHODS  # noqa: E402
from generator.run.pipeline import generate  # noqa: E402

# Every method's example config, as the registry names them (`make demo`'s default.yaml is magpie.yaml
# with a record target).
CONFIGS = [method.example for method in METHODS.values()]


def run_one(name: str, out: Path, records: int, endpoint: str | None, key_env: str | None) -> dict[str, object]:
    overrides: dict[str, object] = {"generation.num_records": records, "report.enabled": False}
    if endpoint:
        overrides |= {"server.endpoints": [endpoint], "server.api_key_env": key_env}
    config = load_config(name, overrides=overrides)
    config.run_dir = out / Path(name).stem
    result = generate(config, progress=False)
    # Every session's seconds (spent.json): a finished run in `--out` is read again, not made again.
    wall = float(json.loads((config.run_dir / "spent.json").read_text())["seconds"])
    funnel = json.loads((config.run_dir / "funnel.json").read_text())
    results = [json.loads(line) for line in (config.run_dir / "results.jsonl").open()]
    tokens = sum(r["completion_tokens"] or 0 for r in results)
    rows = _rows(result)
    return {
        "config": name,
        "method": config.generation.method,
        "rows": result.records,
        "wall_s": wall,
        "rows_per_min": 60 * result.records / wall if wall else 0.0,
        "requests": len(results),
        # What the rows cost the model whatever else the machine runs: tokens generated per row kept.
        "tokens_per_row": tokens / result.records if result.records else 0.0,
        "candidates": funnel.get("candidates", 0),
        "acceptance": result.records / funnel["candidates"] if funnel.get("candidates") else 0.0,
        "sample": rows,
    }


def _rows(result: object) -> list[dict[str, str]]:
    import datasets

    train = datasets.load_dataset(str(result.dataset_dir))["train"]  # type: ignore[attr-defined]
    out = []
    for row in train:
        if row.get("messages"):
            user = next((m["content"] for m in row["messages"] if m["role"] == "user"), "")
            answer = next((m["content"] for m in row["messages"] if m["role"] == "assistant"), "")
        else:
            user = " ".join(x for x in (row.get("instruction", ""), row.get("input", "")) if x)
            answer = row.get("output", "")
        out.append({"request": user, "answer": answer})
    return out


def blind(results: list[dict[str, object]], read: int, seed: int) -> str:
    rng = random.Random(seed)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    order = list(range(len(results)))
    rng.shuffle(order)
    lines = ["# Rows read blind", ""]
    key = []
    entries = []
    for letter, index in zip(letters, order, strict=False):
        res = results[index]
        key.append(f"- {letter}: {res['config']} ({res['method']})")
        sample = list(res["sample"])  # type: ignore[call-overload]
        rng.shuffle(sample)
        entries += [(letter, row) for row in sample[:read]]
    rng.shuffle(entries)
    for number, (letter, row) in enumerate(entries, 1):
        answer = row["answer"].strip().replace("\n", " ")
        lines += [f"{number}. [{letter}] **{row['request'].strip()}**", f"   > {answer[:400]}", ""]
    return "\n".join(lines + ["## Key", "", *key, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=CONFIGS, help="configs/ names (default: every method's)")
    parser.add_argument("--records", type=int, default=20, help="rows each run makes (default 20, make demo's)")
    parser.add_argument("--endpoint", help="a running vLLM server of the bundled model (default: one per run)")
    parser.add_argument("--key-env", help="the environment variable holding its key")
    parser.add_argument("--read", type=int, default=10, help="rows per method in blind.md (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="the shuffle of blind.md")
    parser.add_argument("--out", type=Path, required=True, help="run directories, results.json and blind.md")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    print("| config | method | rows | wall s | rows/min | requests | tokens/row | acceptance |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.configs:
        try:
            res = run_one(name, args.out, args.records, args.endpoint, args.key_env)
        except InstructforgeError as e:  # Ctrl-C, a dead server: the runs so far are still compared
            print(f"{name}: {e}", file=sys.stderr)
            break
        results.append(res)
        print(
            f"| {res['config']} | {res['method']} | {res['rows']} | {res['wall_s']:.0f} | {res['rows_per_min']:.1f} "
            f"| {res['requests']} | {res['tokens_per_row']:.0f} | {res['acceptance']:.0%} |",
            flush=True,
        )
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "blind.md").write_text(blind(results, args.read, args.seed))
    print(f"\nrows to read blind: {args.out / 'blind.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
