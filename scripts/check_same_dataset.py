"""Does a refactor change what a config produces? Runs `instructforge generate` from a checkout
against the fake OpenAI-compatible server, for every method, and writes what came out: the
dataset's rows (ids, text, meta), the funnel and the request ids sent.

    python scripts/check_same_dataset.py --repo OLD_CHECKOUT --out /tmp/before.json
    python scripts/check_same_dataset.py --repo . --out /tmp/after.json --compare /tmp/before.json

With `--keep DIR` the run directories are kept in DIR, and a second call with the same DIR
resumes them with the other checkout's code: a run directory written before a change must be
accepted after it, send no new request and give the same dataset:

    python scripts/check_same_dataset.py --repo OLD_CHECKOUT --out /tmp/before.json --keep /tmp/runs
    python scripts/check_same_dataset.py --repo . --out /tmp/after.json --keep /tmp/runs --compare /tmp/before.json

It calls the CLI in a subprocess with the checkout first on PYTHONPATH, so it works across any
change of the package's inner layout. The fake server answers deterministically (`--variants`),
so two runs of the same code give the same output.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parents[1]
CASES = {
    "self_instruct": "generation: {method: self_instruct, num_instructions: 16}\n",
    "self_instruct_response": "generation: {method: self_instruct, num_instructions: 12, instances: response}\n",
    "alpaca_batch": "generation: {method: alpaca_batch, num_instructions: 12}\n",
    "evol_instruct": "generation: {method: evol_instruct, num_instructions: 10, instances: response}\n",
    "custom": "generation: {method: custom, num_instructions: 10, custom: {topics: [tea, maps]}}\n",
    # The default chains in full (semantic dedup with MiniLM included) on one method.
    "default_chains": "generation: {num_instructions: 12, instances: response}\nfilters: null\n",
}
LIGHT_FILTERS = (
    "filters: {instructions: [{name: length}, {name: exact_dedup}], "
    "records: [{name: truncated}, {name: pii, action: redact}]}\n"
)


def _rows(dataset_dir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for shard in sorted((dataset_dir / "data").glob("*.parquet")):
        rows += pq.read_table(shard).to_pylist()
    for row in rows:
        row["meta"] = json.loads(row["meta"]) if isinstance(row["meta"], str) else row["meta"]
    return sorted(rows, key=lambda r: r["id"])


def run_case(repo: Path, url: str, name: str, body: str, tmp: Path) -> dict[str, Any]:
    cfg = tmp / f"{name}.yaml"
    filters = "" if "filters:" in body else LIGHT_FILTERS
    body = body.replace("filters: null\n", "")
    cfg.write_text(
        f"run_dir: {tmp / name}\nmodel: {{name: fake, served_name: fake-model}}\n"
        f"server: {{endpoints: [{url}]}}\nengine: {{concurrency: 4}}\n{body}{filters}"
    )
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run(
        [sys.executable, "-m", "generator.cli", "generate", "-c", str(cfg)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise SystemExit(f"{name}: generate failed:\n{done.stderr[-3000:]}")
    run_dir = tmp / name
    funnel = json.loads((run_dir / "funnel.json").read_text())
    sent = sorted(json.loads(line)["request_id"] for line in (run_dir / "results.jsonl").read_text().splitlines())
    return {"rows": _rows(run_dir / "dataset"), "funnel": funnel, "requests": sent}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, required=True, help="checkout whose code runs")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--compare", type=Path, help="an earlier --out to compare with")
    ap.add_argument("--keep", type=Path, help="keep the run directories here; resume those already there")
    args = ap.parse_args()
    fake = subprocess.Popen(
        [sys.executable, str(HERE / "tests" / "fake_openai.py"), "--variants"], stdout=subprocess.PIPE, text=True
    )
    try:
        url = fake.stdout.readline().strip()  # type: ignore[union-attr]
        with tempfile.TemporaryDirectory() as tmp:
            where = args.keep.resolve() if args.keep else Path(tmp)
            where.mkdir(parents=True, exist_ok=True)
            resumed = [name for name in CASES if (where / name / "results.jsonl").exists()]
            out = {name: run_case(args.repo.resolve(), url, name, body, where) for name, body in CASES.items()}
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    args.out.write_text(json.dumps(out, indent=1, sort_keys=True, ensure_ascii=False, default=str))
    if resumed:
        print(f"resumed the run directories already in {args.keep}: {', '.join(resumed)}")
    for name, case in out.items():
        print(
            f"{name}: {len(case['rows'])} rows, {len(case['requests'])} requests, "
            f"{case['funnel']['candidates']} candidates"
        )
    if args.compare is None:
        return 0
    before = json.loads(args.compare.read_text())
    after = json.loads(args.out.read_text())
    differ = [name for name in CASES if before.get(name) != after.get(name)]
    for name in differ:
        for part in ("rows", "funnel", "requests"):
            if before[name][part] != after[name][part]:
                print(f"DIFFERENT: {name}: {part}")
    print("same datasets, funnels and requests" if not differ else f"{len(differ)} of {len(CASES)} cases differ")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
