"""Benchmark of a whole run (`generate`: templates, engine, parse, filters, store, dataset) against
the fake OpenAI-compatible server (tests/fake_openai.py, answering at once) as the requests grow.

Each size runs in a fresh process; its peak RSS and CPU time come from `os.wait4` on that process
(the fake server runs in another process and is not counted). The config is self-instruct with
`instances: response` (one answer request per instruction) and light filters, so that the engine,
the store and the rounds loop dominate rather than the model or the filters.

    python scripts/bench_run.py                          # 10k and 100k requests
    python scripts/bench_run.py --sizes 10000 100000 1000000
    python scripts/bench_run.py --keep /tmp/bench_runs   # keep the run directories

Prints one row per size (requests, wall s, requests/s, CPU s per 1k requests, peak RSS MiB, and
the peak before the dataset write starts) and the RSS growth between the two largest sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Requests per instruction with this config: one answer each, plus the instruction requests
# (8 asked per request, over-generated 2x, most kept): about 1.1.
REQUESTS_PER_INSTRUCTION = 1.1


def _config(run_dir: Path, url: str, requests: int, concurrency: int) -> str:
    instructions = max(1, round(requests / REQUESTS_PER_INSTRUCTION))
    # Each round asks at most `concurrency` requests of 8 instructions: enough rounds for the target.
    rounds = 4 * instructions // (8 * concurrency) + 20
    return (
        f"run_dir: {run_dir}\n"
        "model: {name: fake, served_name: fake-model}\n"
        f"server: {{endpoints: [{url}]}}\n"
        f"engine: {{concurrency: {concurrency}}}\n"
        f"generation: {{num_instructions: {instructions}, instances: response, max_rounds: {rounds}}}\n"
        # The fake server echoes prompts: keep the chains to what such text passes.
        "filters: {instructions: [{name: length}, {name: exact_dedup}], records: [{name: truncated}]}\n"
        # The pipeline's memory and speed; the report (a bounded sample) is benchmarked apart.
        "report: {enabled: false}\n"
    )


def child(config_path: str) -> None:
    """One run, in this process; prints its figures as one JSON line."""
    import resource

    from generator.config import load_config
    from generator.publish.writer import DatasetWriter
    from generator.run.pipeline import generate

    # The peak before the dataset write: what generating (engine, store, rounds, filters) holds,
    # apart from what writing the dataset adds on top.
    before_write: list[float] = []
    write = DatasetWriter.write

    def measured_write(self: DatasetWriter, *args: object, **kwargs: object) -> object:
        before_write.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return write(self, *args, **kwargs)

    DatasetWriter.write = measured_write  # type: ignore[method-assign]
    config = load_config(config_path)
    start = time.perf_counter()
    result = generate(config, fresh=True, progress=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "records": result.records, "peak_before_write_mib": before_write[0]}))


def _one(url: str, requests: int, concurrency: int, work: Path) -> dict[str, float]:
    run_dir = work / f"run-{requests}"
    cfg = work / f"bench-{requests}.yaml"
    cfg.write_text(_config(run_dir, url, requests, concurrency))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, __file__, "--child", str(cfg)], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"the run of {requests} requests failed ({proc.returncode}):\n{err.read()[-3000:]}")
        row = json.loads(out.read().strip().splitlines()[-1])
    with open(run_dir / "results.jsonl", "rb") as f:
        sent = sum(1 for _ in f)
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "requests": sent,
        "records": row["records"],
        "wall_s": round(row["seconds"], 1),
        "requests_per_s": round(sent / row["seconds"]),
        "cpu_s_per_1k": round(cpu / sent * 1000, 3),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "peak_before_write_mib": round(row["peak_before_write_mib"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="requests per run")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--variants"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        print(f"fake server {url}, concurrency {args.concurrency}, load {os.getloadavg()[0]:.1f}", flush=True)
        print("| requests | records | wall s | req/s | CPU s per 1k | peak RSS MiB | peak before the write MiB |")
        print("| --- | --- | --- | --- | --- | --- | --- |", flush=True)
        rows = []
        for n in args.sizes:
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                row = _one(url, n, args.concurrency, args.keep)
            else:
                with tempfile.TemporaryDirectory() as work:
                    row = _one(url, n, args.concurrency, Path(work))
            rows.append(row)
            print(
                f"| {row['requests']:,} | {row['records']:,} | {row['wall_s']} | {row['requests_per_s']:,} "
                f"| {row['cpu_s_per_1k']} | {row['peak_rss_mib']} | {row['peak_before_write_mib']} |",
                flush=True,
            )
        if len(rows) >= 2:
            a, b = rows[-2], rows[-1]
            print(
                f"peak RSS {a['requests']:,} -> {b['requests']:,} requests: {a['peak_rss_mib']} -> "
                f"{b['peak_rss_mib']} MiB ({(b['peak_rss_mib'] / a['peak_rss_mib'] - 1):+.0%}), before the write "
                f"{a['peak_before_write_mib']} -> {b['peak_before_write_mib']} MiB; "
                f"CPU s per 1k {a['cpu_s_per_1k']} -> {b['cpu_s_per_1k']}; load {os.getloadavg()[0]:.1f}"
            )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
